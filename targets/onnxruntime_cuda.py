"""ONNX Runtime on an NVIDIA GPU (target `x86-cuda-ort`): ONNX artifacts for onnxruntime-gpu's CUDA or
TensorRT execution provider, gated on the GPU host through the device bundle, as TensorRT's engines are.

fp32 is the checked, simplified graph as it is (ONNX Runtime's offline optimisations depend on the
provider, so the session optimises on the device); fp16 is the ONNX Runtime builder's fp16 graph with the
profile's float islands (options `keep_fp32`, `fp16_keep_ops`). The build records the providers the
device's sessions must use (options `providers`, most preferred first). On a host without them the exact
file is gated on ONNX Runtime's CPU provider here (the stand-in: it proves the file and the golden data,
not the GPU's numerics) and the GPU rows wait for the bundle's verify.py; on a host whose onnxruntime has
the GPU provider and a GPU, the gates run here on it and nothing is deferred.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from voxc.core import providers as eps
from voxc.core.errors import VoxcError
from voxc.targets.base import Backend
from voxc.targets.ort_runner import OrtRunner
from voxc.targets.runner import Runner

PRECISIONS = ("fp32", "fp16")
FILE = "model.onnx"
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def gpu_providers(providers) -> list[str]:
    """The providers of a list that run on the GPU (every one but the CPU's)."""
    return [p for p in providers if p != eps.CPU]


def wanted(options: dict) -> list[str]:
    """The providers a build records: the profile's, else CUDA then CPU; at least one must be a GPU's."""
    chosen = eps.parse(options.get("providers")) or list(DEFAULT_PROVIDERS)
    if not gpu_providers(chosen):
        raise VoxcError(f"onnxruntime-cuda providers {chosen} name no GPU provider; list CUDAExecutionProvider "
                        "or TensorrtExecutionProvider first (or build the onnxruntime target for the CPU)")
    return chosen


def deferred_reason(providers) -> str:
    return (f"ONNX Runtime's {', '.join(gpu_providers(providers))} is not on this host: the bundle's verify.py runs "
            "it on the GPU host (onnxruntime-gpu)")


class OnnxRuntimeCuda(Backend):
    name, precisions, tools, parity = "onnxruntime-cuda", PRECISIONS, ("onnxruntime", "onnx"), "device"
    format, roles = "onnx", {FILE: "model"}
    resources = {"cuda": 1}           # a device stage runs on a Ray node advertising this
    device = "the NVIDIA GPU host (Python 3 with numpy and onnxruntime-gpu)"
    verify_steps = "opens every graph on ONNX Runtime's GPU provider (a session that falls back to the CPU is refused), "
    identity = ("host", "gpu", "onnxruntime", "gpu_provider", "machine")
    evidence_device = ("onnxruntime", "gpu_provider")    # which GPU provider the device's sessions ran on
    manifest_keys = ("providers",)                       # what the shipped artifact's sessions must use
    bundle_notes = """
ONNX Runtime on the GPU: install onnxruntime-gpu in place of onnxruntime (both own the `onnxruntime`
module; CUDA 12 and cuDNN 9 must be on the loader path, e.g. pip install nvidia-cuda-runtime-cu12
nvidia-cudnn-cu12). A session whose GPU provider fails to load is refused, never run on the CPU.
"""

    @property
    def modules(self):
        return (type(self).__module__, "voxc.targets.onnxruntime")     # its fp16 comes from ORT's builder

    def build(self, source, out_dir, precision, spec=None, calibration=None, options=None, torch_module=None):
        options = options or {}
        if precision not in PRECISIONS:
            raise VoxcError(f"onnxruntime-cuda precision '{precision}' is not supported: use {', '.join(PRECISIONS)}")
        providers = wanted(options)
        kept = {}
        if precision == "fp32":
            shutil.copyfile(source, Path(out_dir) / FILE)
        else:
            from voxc.targets import backend
            with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
                rec = backend("onnxruntime").build(source, Path(tmp), precision, spec, calibration,
                                                   {k: v for k, v in options.items() if k != "providers"})
                shutil.copyfile(Path(tmp) / rec["file"], Path(out_dir) / FILE)
            kept = {k: rec[k] for k in ("fp32_nodes", "fp32_ops") if rec.get(k)}
        return self.record(precision, providers=providers, **kept)

    def open(self, path, record=None, threads=None) -> Runner:
        providers = (record or {}).get("providers") or eps.from_env() or list(DEFAULT_PROVIDERS)
        runner = OrtRunner(Path(path), threads, providers=providers)
        runner.name = self.name
        return runner

    def unavailable(self):
        lacking = eps.missing(DEFAULT_PROVIDERS[:1])
        return f"ONNX Runtime here has no {lacking[0]}: {eps.INSTALL}" if lacking else None

    def fingerprint(self):
        return {**OrtRunner.fingerprint(list(DEFAULT_PROVIDERS) if self.unavailable() is None else None),
                "runtime": self.name}

    def host_checks(self, spec, art_dir, record, precision, options, check):
        """The exact file the device loads, gated on the CPU provider; on the GPU provider too where this
        host has it."""
        path = Path(art_dir) / record["file"]
        rows = [{**r, "checked": "onnx for onnxruntime-cuda"}
                for r in check(OrtRunner(path, providers=[eps.CPU]), "onnxruntime")]
        providers = record.get("providers") or list(DEFAULT_PROVIDERS)
        if eps.missing(gpu_providers(providers)):
            return rows, deferred_reason(providers)
        return rows + check(self.open(path, record), self.name), None

    def bundle_entry(self, name, art_path, record, precision, source, put, put_tree):
        onnx = put(art_path, f"models/{name}/{art_path.name}")
        return {"files": {precision: onnx}, "providers": record.get("providers") or list(DEFAULT_PROVIDERS),
                "stand_in": {"onnx": onnx, "precision": precision}}
