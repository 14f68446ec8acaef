"""targets/: where artifacts run -- one backend class per runtime (targets/base.py) plus TOML target profiles.

The registry below is the one place that maps a backend name to its class; compiler/ asks it for a
Backend and calls only the contract.
"""
from __future__ import annotations

import functools
import importlib

from voxc.core.errors import VoxcError

BACKENDS = {"onnxruntime": "voxc.targets.onnxruntime:OnnxRuntime", "openvino": "voxc.targets.openvino:OpenVino",
            "coreml": "voxc.targets.coreml:CoreML", "tensorrt": "voxc.targets.tensorrt:TensorRT",
            "onnxruntime-cuda": "voxc.targets.onnxruntime_cuda:OnnxRuntimeCuda"}


@functools.lru_cache(maxsize=None)
def backend(name: str):
    """The Backend instance for a runtime name."""
    if name not in BACKENDS:
        raise VoxcError(f"unknown backend '{name}': choose from {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()
