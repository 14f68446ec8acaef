"""Core ML prediction on macOS: the runner and device fingerprint (numpy + coremltools only).

Split from targets/coreml.py (which converts from PyTorch) so device bundles can ship it.
"""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import numpy as np

from voxc.core.errors import VoxcError

DEFERRED_REASON = "Core ML runs only on macOS"


class CoreMLRunner:
    """Core ML prediction (macOS only): int inputs cast to int32, outputs back to the spec's dtypes."""

    def __init__(self, path: Path, inputs: list[dict] | None = None, outputs: list[dict] | None = None):
        if platform.system() != "Darwin":
            raise VoxcError(f"{DEFERRED_REASON}; run the bundle's verify.py on a Mac")
        import coremltools as ct
        self.name = "coreml"
        self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)
        self.outputs = {o["name"]: o["dtype"] for o in outputs or []}

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        got = self.model.predict({k: (v.astype(np.int32) if v.dtype.kind in "iu" else v) for k, v in feeds.items()})
        return {k: np.asarray(v).astype(self.outputs.get(k, str(np.asarray(v).dtype)))
                for k, v in got.items()}


def runner(path: Path, inputs=None, outputs=None) -> CoreMLRunner:
    return CoreMLRunner(path, inputs, outputs)


def fingerprint() -> dict:
    try:
        version = importlib.metadata.version("coremltools")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"runtime": "coreml", "coremltools": version, "system": platform.system(),
            "macos": platform.mac_ver()[0] or None, "machine": platform.machine(),
            "can_predict": platform.system() == "Darwin"}
