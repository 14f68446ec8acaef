"""ONNX Runtime runner: numpy in, numpy out on the CPU execution provider.

Kept apart from the builder (targets/onnxruntime.py, which needs onnx and the quantization tools)
so device bundles can ship it as the stand-in runner with only numpy and onnxruntime installed.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session_options(threads: int | None = None, optimize: bool = True) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads or int(os.environ.get("VOXC_THREADS", "0") or 0)
    # A TTS chain runs several sessions (and runtimes) back to back: threads that spin-wait after a
    # run steal the cores the next graph needs, so idle workers sleep instead.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OrtRunner:
    def __init__(self, path: Path, threads: int | None = None):
        self.name = "onnxruntime"
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers())
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


def runner(path: Path, threads: int | None = None) -> OrtRunner:
    return OrtRunner(path, threads)


def providers() -> list[str]:
    """Execution providers, most preferred first: the CPU provider unless VOXC_ORT_PROVIDERS names others
    (e.g. CUDAExecutionProvider,CPUExecutionProvider to run a bundle's stand-in gates on a GPU)."""
    wanted = [p.strip() for p in os.environ.get("VOXC_ORT_PROVIDERS", "").split(",") if p.strip()]
    available = set(ort.get_available_providers())
    return list(dict.fromkeys([p for p in wanted if p in available] + ["CPUExecutionProvider"]))


def fingerprint() -> dict:
    return {"runtime": "onnxruntime", "version": importlib.metadata.version("onnxruntime"),
            "providers": providers(), "machine": platform.machine()}
