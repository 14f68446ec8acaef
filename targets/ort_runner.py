"""ONNX Runtime runner: numpy in, numpy out on the chosen execution providers (core/providers.py).

Kept apart from the builder (targets/onnxruntime.py, which needs onnx and the quantization tools)
so device bundles can ship it as the stand-in runner with only numpy and onnxruntime installed.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voxc.core import providers as eps


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
    """One session over an ONNX file (or its bytes). providers: the build record's; None reads
    VOXC_ORT_PROVIDERS, else the CPU provider. A provider this onnxruntime lacks is an error."""

    def __init__(self, model: Path | bytes, threads: int | None = None, providers=None, optimize: bool = True):
        self.name = "onnxruntime"
        self.session = eps.session(model if isinstance(model, bytes) else Path(model),
                                   session_options(threads, optimize), providers)
        self.providers = self.session.get_providers()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))

    @staticmethod
    def fingerprint(providers=None) -> dict:
        """The runtime a result came from: onnxruntime's version and the providers its sessions use."""
        return {"runtime": "onnxruntime", "version": ort.__version__,
                "providers": eps.chosen(providers), "machine": platform.machine()}
