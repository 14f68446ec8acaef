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

    def compiled_sha256(self) -> str:
        """sha256 of the compiled model (.mlmodelc) Core ML runs: the evidence a device result carries."""
        from voxc.core.hashing import sha256_tree
        compiled = getattr(self.model, "get_compiled_model_path", None)
        if compiled is None:
            raise VoxcError("this coremltools cannot name its compiled model; install coremltools >= 7 to verify")
        return sha256_tree(Path(compiled()))

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        got = self.model.predict({k: (v.astype(np.int32) if v.dtype.kind in "iu" else v) for k, v in feeds.items()})
        return {k: np.asarray(v).astype(self.outputs.get(k, str(np.asarray(v).dtype)))
                for k, v in got.items()}


    @staticmethod
    def fingerprint() -> dict:
        """The runtime and Mac a result came from."""
        try:
            version = importlib.metadata.version("coremltools")
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {"runtime": "coreml", "coremltools": version, "system": platform.system(),
                "macos": platform.mac_ver()[0] or None, "machine": platform.machine(), "chip": _chip(),
                "can_predict": platform.system() == "Darwin"}


def _chip() -> str | None:
    """The Mac's chip (e.g. Apple M2), from sysctl; None elsewhere."""
    if platform.system() != "Darwin":
        return None
    import subprocess
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
