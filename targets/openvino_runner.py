"""OpenVINO runner: numpy in, numpy out on the CPU plugin, and the runtime's fingerprint.

Kept apart from the builder (targets/openvino.py, which needs NNCF and onnx) so a runtime-only install
opens IR artifacts with nothing but numpy and openvino.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np


def core():
    import openvino as ov
    return ov.Core()


class OvRunner:
    def __init__(self, path: Path, threads: int | None = None):
        self.name = "openvino"
        threads = threads or int(os.environ.get("VOXC_THREADS", "0") or 0)
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        config["INFERENCE_PRECISION_HINT"] = "f32"   # honour the artifact's precision, not a host default
        self.compiled = core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = self.request.infer(feeds)
        return {o.get_any_name(): np.array(v) for o, v in res.items()}

    @staticmethod
    def fingerprint() -> dict:
        """The runtime a result came from."""
        return {"runtime": "openvino", "version": importlib.metadata.version("openvino"),
                "device": "CPU", "machine": platform.machine()}
