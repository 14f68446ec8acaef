"""TensorRT backend (targets `jetson`, `x86-cuda`): the host-validated ONNX, its profiles and build recipe.

The artifact is the ONNX file a TensorRT builder will parse, validated here: fp32 is the checked,
simplified graph; fp16 (mixed precision, for strong typing) and int8 (explicit QDQ) come from
the ONNX Runtime backend's build and must keep to standard ONNX ops (ORT contrib ops would not parse in
TensorRT). int8 uses this backend's own INT8 settings (INT8_DEFAULTS: TensorRT's symmetric int8, not
the CPU's uint8) and is refused unless it keeps TensorRT's explicit-quantization rules
(targets/trt_qdq_rules.py); the host gate runs that same file on ONNX Runtime. Beside it go
profiles.json (optimization profiles from the spec and the corpus, targets/trt_profiles.py) and
recipe.json (workspace, DLA, regime). Engines themselves are built where the GPU is
(targets/trt_engine.py): on an x86 host with CUDA and TensorRT at build time (option build_here),
otherwise on the device from the bundle (compiler/bundle.py).
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.targets.base import Backend
from voxc.targets import trt_engine
from voxc.targets.runner import Runner
from voxc.targets.trt_qdq_rules import STANDARD_DOMAINS

FILE = "model.onnx"
PRECISIONS = ("fp32", "fp16", "int8")
RECIPE_KEYS = ("workspace_mb", "dla_core", "regime", "max_profiles", "split_ratio", "opt_batch")

# TensorRT 10/11 explicit quantization: int8 only, zero point 0 (activations and weights symmetric),
# activations per tensor, weights per channel on the axis TensorRT's kernels quantize (Conv: output
# channels; ConvTranspose: axis 0, as TensorRT's deconvolution kernels expect, not ORT's default 1),
# no range reduction (a CPU-only workaround), biases left float (TensorRT has no int32 DQ, so no weight
# scale adjustment for an int32 bias either), standard Q/DQ ops only, one DQ per consumer so every
# layer sees its own fusable Q/DQ pair, and activations such as Relu kept (TensorRT fuses them;
# dropping them is only exact with asymmetric ranges).
# The profile's [options.tensorrt(.models.M).onnxruntime] (e.g. keep_fp32 islands) apply on top.
INT8_DEFAULTS = {"activation_type": "int8", "weight_type": "int8", "reduce_range": False, "per_channel": True,
                 "weight_axes": {"ConvTranspose": 0},
                 "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                   "UseQDQContribOps": False, "DedicatedQDQPair": True,
                                   "QDQKeepRemovableActivations": True, "QDQDisableWeightAdjustForInt32Bias": True}}


def deferred_reason(options: dict) -> str:
    if options.get("build_on") == "device":
        return "TensorRT engines for this target are built and checked on the device (Jetson)"
    return "TensorRT is not installed on this host"


def nonstandard_ops(path: Path) -> list[str]:
    """Ops outside the standard ONNX domain (e.g. com.microsoft fusions), which TensorRT cannot parse."""
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    return sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS})


def ort_options(precision: str, options: dict) -> dict:
    """Options for the ONNX Runtime backend's build: int8 gets TensorRT's INT8 settings under the profile's
    onnxruntime options, and the held-out validation items (for the sensitivity pass)."""
    ort = dict(options.get("onnxruntime", {}))
    if precision != "int8":
        return ort
    extra = {**INT8_DEFAULTS["extra_options"], **ort.get("extra_options", {})}
    return {**INT8_DEFAULTS, **ort, "extra_options": extra,
            **({"validation": options["validation"]} if options.get("validation") else {})}


def qdq_rules(path: Path, label) -> dict:
    """TensorRT's explicit-quantization rules on the int8 graph: refused with one line when broken."""
    from voxc.targets import trt_qdq_rules
    problems = trt_qdq_rules.check(path)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VoxcError(f"{label}: the int8 ONNX breaks TensorRT's explicit-quantization rules: {problems[0]}{more}")
    import onnx
    nodes = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {"rules": "tensorrt explicit quantization (targets/trt_qdq_rules.py)", "violations": 0,
            "quantize_nodes": nodes.count("QuantizeLinear"), "dequantize_nodes": nodes.count("DequantizeLinear")}


def rules_row(model: str, path: Path) -> dict:
    """One parity row: the int8 file the host gate ran and the bundle ships, against TensorRT's rules."""
    from voxc.core.hashing import sha256_file
    from voxc.targets import trt_qdq_rules
    problems = trt_qdq_rules.check(path)
    return {"model": model, "precision": "int8", "runtime": "tensorrt", "length": 0, "batch": 0, "output": "*",
            "metric": "trt_qdq_rules", "value": float(len(problems)), "tolerance": 0.0, "passed": not problems,
            "checked": "onnx for tensorrt", "sha256": sha256_file(path),
            **({"error": "; ".join(problems)[:400]} if problems else {})}


def trt_available() -> bool:
    return bool(trt_engine.device_fingerprint().get("tensorrt")) and bool(trt_engine.device_fingerprint().get("gpu"))


def _build_here(out_dir: Path, precision: str, profiles: list[dict], recipe: dict, source: Path) -> dict:
    """x86-cuda with TensorRT and a GPU at build time: build the engine now (thin; runs on CUDA hosts only)."""
    fp = trt_engine.device_fingerprint()
    reg = trt_engine.regime(fp["tensorrt"], recipe.get("regime", "auto"))
    files = {"fp32": str(source), precision: str(out_dir / FILE)}
    rec = trt_engine.plan(precision, reg, files)
    engine = trt_engine.build_engine(Path(rec["onnx"]), rec, profiles, recipe["workspace_mb"], recipe.get("dla_core"),
                                     out_dir / "timing.cache")
    trt_engine.save_engine(out_dir / "model.engine", engine, fp,
                           {"precision": precision, "regime": reg, "profiles": profiles,
                            "rebuild": "make engines TARGET=x86-cuda"})
    return {"engine": "model.engine", "regime": reg, "device": fp}


class TensorRT(Backend):
    name, precisions, tools, parity = "tensorrt", PRECISIONS, ("tensorrt", "onnx", "onnxruntime"), "device"
    format, roles = "onnx", {FILE: "model", "profiles.json": "config", "recipe.json": "config"}
    shipped = ("voxc.targets.trt_engine",)
    speech_lengths = True             # optimization profiles cut at corpus lengths (targets/trt_profiles.py)
    resources = {"cuda": 1}           # a device stage runs on a Ray node advertising this (profiles may say jetson)
    device = "the Jetson (JetPack's python3 has TensorRT and numpy) or the GPU host"
    verify_steps = "builds the engines (engines/), "
    identity = ("host", "gpu", "compute_capability", "tensorrt", "l4t", "machine")
    evidence_device = ("tensorrt", "gpu", "compute_capability")
    evidence_judged = ("engine_sha256",)             # each engine plan verify.py built or loaded
    manifest_keys = ("qdq_rules",)
    bundle_notes = """
TensorRT: `--rebuild` rebuilds engines; an engine whose recorded fingerprint (TensorRT version, GPU,
compute capability, L4T) differs from this device is refused before deserialization, naming the
difference. Inputs longer than a profile's max must be split by the caller (lib/voxc/targets/split.py).
"""

    @property
    def modules(self):
        # its fp16/int8 ONNX come from ORT's builder; int8 is checked against TensorRT's rules
        return ("voxc.targets.tensorrt", "voxc.targets.onnxruntime", "voxc.targets.trt_qdq_rules")

    def build(self, source, out_dir, precision, spec=None, calibration=None, options=None, torch_module=None):
        """The ONNX TensorRT will parse (fp16/int8 made by the ONNX Runtime builder under TensorRT's rules),
        its profiles and build recipe; the engine too when this host has TensorRT and a GPU."""
        from voxc.targets import trt_profiles
        options = options or {}
        if precision not in PRECISIONS:
            raise VoxcError(f"TensorRT precision '{precision}' is not supported: use {', '.join(PRECISIONS)}")
        kept = {}
        if precision == "fp32":
            shutil.copyfile(source, out_dir / FILE)
        else:  # reduced precision is produced and parity-checked on the host with ONNX Runtime first
            from voxc.targets import backend
            with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
                rec = backend("onnxruntime").build(source, Path(tmp), precision, spec, calibration=calibration,
                                                   options=ort_options(precision, options), torch_module=torch_module)
                shutil.copyfile(Path(tmp) / rec["file"], out_dir / FILE)
            kept = {k: rec[k] for k in ("int8", "fp32_nodes", "fp32_ops", "calibration_items", "sensitivity") if rec.get(k)}
        label = spec.name if spec else source
        bad = nonstandard_ops(out_dir / FILE)
        if bad:
            raise VoxcError(f"{label}: the {precision} ONNX for TensorRT uses non-standard ops "
                            f"{', '.join(bad[:6])}; TensorRT cannot parse them -- produce it without ORT-specific fusions")
        rules = qdq_rules(out_dir / FILE, label) if precision == "int8" else None
        profiles = trt_profiles.derive(spec, options)
        recipe = {k: options[k] for k in RECIPE_KEYS if k in options}
        recipe.setdefault("workspace_mb", 1024)
        recipe.setdefault("regime", "auto")
        (out_dir / "profiles.json").write_text(json.dumps(profiles, indent=1))
        (out_dir / "recipe.json").write_text(json.dumps(recipe, indent=1, sort_keys=True))
        record = self.record(precision, profiles=profiles, recipe=recipe, **kept,
                             **({"qdq_rules": rules} if rules else {}))
        if options.get("build_here") and trt_available():
            record.update(_build_here(out_dir, precision, profiles, recipe, source))
        return record

    def open(self, path, record=None, threads=None) -> Runner:
        """A TensorRT runner for an engine built here (path: the engine, or the ONNX beside it)."""
        record = record or {}
        path = Path(path)
        engine_path = path if path.suffix == ".engine" else path.with_name("model.engine")
        side = trt_engine.read_sidecar(engine_path)
        engine = trt_engine.load_engine(engine_path, trt_engine.device_fingerprint(), side.get("rebuild", "make engines"))
        return trt_engine.TrtRunner(engine, record.get("profiles") or side["profiles"],
                                    record.get("inputs") or side.get("inputs", []))

    def unavailable(self):
        return None if trt_available() else "TensorRT engines need TensorRT and an NVIDIA GPU on this host"

    def fingerprint(self):
        fp = trt_engine.device_fingerprint()
        try:
            fp["tensorrt_wheel"] = importlib.metadata.version("tensorrt")
        except importlib.metadata.PackageNotFoundError:
            fp["tensorrt_wheel"] = None
        return {"runtime": "tensorrt", **fp}

    def host_checks(self, spec, art_dir, record, precision, options, check):
        """The exact ONNX handed to TensorRT, gated with ONNX Runtime (int8: and against TensorRT's explicit-
        quantization rules); the engine too when built here."""
        from voxc.targets.ort_runner import OrtRunner
        rows = [{**r, "checked": "onnx for tensorrt"} for r in check(OrtRunner(art_dir / record["file"]), "onnxruntime")]
        if precision == "int8":
            rows.insert(0, rules_row(spec.name, art_dir / record["file"]))
        if record.get("engine"):
            engine = self.open(art_dir / record["engine"], {**record, "inputs": spec.to_json()["inputs"]})
            return rows + check(engine, self.name), None
        return rows, deferred_reason(options)

    def bundle_entry(self, name, art_path, record, precision, source, put, put_tree):
        onnx = put(art_path, f"models/{name}/{art_path.name}")
        return {"files": {"fp32": source, precision: onnx}, "profiles": record["profiles"], "recipe": record["recipe"],
                "stand_in": {"onnx": onnx, "precision": precision},   # the host gate's file is the one TensorRT gets
                **({"qdq_rules": record["qdq_rules"]} if record.get("qdq_rules") else {})}
