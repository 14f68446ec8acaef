"""ONNX Runtime backend: optimises and saves a graph per precision; runs it on the CPU provider."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.errors import VoxcError

FILE = "model.onnx"
TOOLS = ("onnxruntime", "onnx")


def session_options(threads: int | None = None, optimize: bool = True) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads or int(os.environ.get("VOXC_THREADS", "0") or 0)
    return so


def build(source: Path, out_dir: Path, precision: str, spec=None, calibration=None, options=None,
          torch_module=None) -> dict:
    """Apply ORT's extended graph optimisations offline and save the result (fp32)."""
    if precision != "fp32":
        raise VoxcError(f"onnxruntime precision '{precision}' is not available yet; use fp32")
    so = session_options(threads=1)
    # EXTENDED, not ALL: layout transforms at ALL are host-specific and must not be baked offline.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(out_dir / FILE)
    ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
    return {"file": FILE, "format": "onnx", "precision": precision, "runtime": "onnxruntime"}


class OrtRunner:
    def __init__(self, path: Path, threads: int | None = None):
        self.name = "onnxruntime"
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


def runner(path: Path, threads: int | None = None) -> OrtRunner:
    return OrtRunner(path, threads)


def fingerprint() -> dict:
    return {"runtime": "onnxruntime", "version": importlib.metadata.version("onnxruntime"),
            "providers": ["CPUExecutionProvider"], "machine": platform.machine()}
