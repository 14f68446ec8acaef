"""targets/: where artifacts run -- one module per backend plus TOML target profiles.

A backend module offers build(source, out_dir, precision, spec, calibration, options, torch_module)
-> record dict (source: the checked, simplified ONNX; torch_module: a callable returning the
PyTorch module, for backends that convert from PyTorch), runner(path) -> Runner, and
fingerprint() -> dict. Runners take and return dict[str, np.ndarray]
keyed by the spec's names, so parity and benchmarks are written once for every backend.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from models.errors import VoxcError

BACKENDS = {"onnxruntime": "targets.onnxruntime", "openvino": "targets.openvino", "coreml": "targets.coreml",
            "tensorrt": "targets.tensorrt"}


def backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise VoxcError(f"unknown backend '{name}': choose from {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])
