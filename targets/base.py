"""The backend contract: one class per runtime, the only thing compiler/ knows about a backend.

    name          the runtime's label in records, reports and the target folder
    precisions    the precisions it can build
    format        what its build writes (onnx, openvino-ir, mlpackage)
    roles         file -> role of what its build writes (model | package, weights, config); record()
                  starts every build record with them, so nobody outside targets/ reads a file name
    tools         PyPI names its stages run that no import of its modules names (the rest of a stage's
                  tool versions come from the stage's import closure: compiler/graph.py)
    parity        "host" (gated here) or "device" (gated by the device bundle; host checks + golden files)
    build(source, out_dir, precision, spec, calibration, options, torch_module) -> record dict
                  source: the checked, simplified ONNX; torch_module: a callable returning the PyTorch
                  module (for backends that convert from PyTorch); the record names the files written
    open(path, record=None, threads=None) -> Runner    the same signature for every backend (record: the build
                  record, or a shipped artifact's manifest entry, which keeps the record's manifest_keys)
    quantize(source, out_dir, spec, calibration, options) -> record    int8 backends: one int8 graph with
                  the given settings (what build() runs for int8; the INT8 study calls it too)
    rank_layers(source, spec, calibration, validation, options) -> {"ranked", "trials", "weights", ...}
                  where a backend can rank: every weighted layer tried alone in float, by the int8 gates
    quantised(out_dir, record) -> {"markers", "nodes", "ops"}   how much of a built artifact runs quantised
                  (ONNX files: Q/DQ nodes and the nodes reading them; OpenVINO IR: FakeQuantize layers)
    unavailable() why this host cannot run its artifacts (None when it can)
    fingerprint() the runtime and host it runs on
    host_checks(...)   device backends: what the host can check before the device does
    bundle_entry(...)  device backends: what it ships per artifact in a device bundle
    shipped       modules the bundle's verifier needs beside the common ones (numpy-only)
    resources     device backends: the Ray custom resources of a node that can run their device stage
                  (a target profile's [ray] table overrides it, e.g. jetson instead of cuda)
Runners take and return dict[str, np.ndarray] keyed by the spec's names.

One file layout per backend: targets/<name>.py holds the Backend class (the builder: it needs the
conversion and quantisation tools), and a runner module holds the Runner and the runtime's
fingerprint with only numpy and the runtime imported, so device bundles can ship it:
    onnxruntime  targets/ort_runner.py        OrtRunner (also the stand-in that proves every bundle)
    onnxruntime-cuda  (targets/onnxruntime_cuda.py: the same OrtRunner on the recorded GPU providers)
    openvino     targets/openvino_runner.py   OvRunner
    coreml       targets/coreml_runner.py     CoreMLRunner
    tensorrt     targets/trt_engine.py        TrtRunner, with the engine decisions it loads by
Backends are classes only: the class is the API (no module-level build/runner functions beside it).
"""
from __future__ import annotations

from pathlib import Path

from voxc.targets.runner import Runner


STAND_IN = "onnxruntime"    # the runtime that runs a device bundle's gates on any host (proves the bundle)


class Backend:
    name: str = ""
    precisions: tuple[str, ...] = ()
    format: str = ""
    roles: dict[str, str] = {}
    tools: tuple[str, ...] = ()
    parity: str = "host"
    shipped: tuple[str, ...] = ()
    resources: dict = {}
    speech_lengths: bool = False          # cuts shape ranges at real utterances' sizes: options["corpus_lengths"]
    device: str = ""                      # where device parity runs, in words (bundle README)
    verify_steps: str = ""                # what the bundle's verify.py does first on the device
    bundle_notes: str = ""                # a paragraph for the bundle README
    identity: tuple[str, ...] = ("host", "machine")   # device fingerprint fields a merged result records
    # the evidence a run of this backend on its device leaves, which `voxc report --merge` requires:
    # device fingerprint fields, and per judged artifact the sha256 of what the runtime really loaded
    evidence_device: tuple[str, ...] = ()
    evidence_judged: tuple[str, ...] = ()
    manifest_keys: tuple[str, ...] = ()   # build-record facts the target manifest keeps on the artifact (open() reads them)

    @property
    def modules(self) -> tuple[str, ...]:
        """Modules whose source closure keys this backend's stages."""
        return (type(self).__module__,)

    @property
    def file(self) -> str:
        """The file (or package folder) a runner opens."""
        return next(f for f, role in self.roles.items() if role in ("model", "package"))

    def record(self, precision: str, **facts) -> dict:
        """The start of every build record: the files written, each with its role, and their format."""
        return {"file": self.file, "files": list(self.roles), "roles": dict(self.roles), "format": self.format,
                "precision": precision, "runtime": self.name, **facts}

    def build(self, source: Path, out_dir: Path, precision: str, spec=None, calibration=None, options=None,
              torch_module=None) -> dict:
        raise NotImplementedError

    def open(self, path: Path, record: dict | None = None, threads: int | None = None) -> Runner:
        raise NotImplementedError

    def unavailable(self) -> str | None:
        return None

    def quantised(self, out_dir: Path, record: dict) -> dict | None:
        """Quantisation markers and quantised nodes of the artifact a build wrote (None: a format this
        backend cannot inspect)."""
        if record.get("format") != "onnx":
            return None
        import onnx
        from voxc.targets.onnx_nodes import quantised_nodes
        return quantised_nodes(onnx.load(str(Path(out_dir) / record["file"]), load_external_data=False))

    def fingerprint(self) -> dict:
        return {"runtime": self.name}

    def host_checks(self, spec, art_dir: Path, record: dict, precision: str, options: dict, check):
        """(rows checked here, reason the rest waits for the device); check(runner, runtime_label) runs the
        caller's parity gates over the sweep against the PyTorch reference."""
        raise NotImplementedError(f"{self.name} has host parity")

    def bundle_entry(self, name: str, art_path: Path, record: dict, precision: str, source: str, put, put_tree) -> dict:
        raise NotImplementedError(f"{self.name} ships no device bundle")
