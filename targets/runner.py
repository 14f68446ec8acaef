"""The Runner interface every backend implements (Polygraphy's loader/runner split), and TorchRunner."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class TorchRunner:
    """A PyTorch module behind the same interface (the FP32 reference, and stand-in for any stage)."""

    def __init__(self, module, spec, name: str = "torch"):
        self.module, self.spec, self.name = module.eval(), spec, name

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        with torch.inference_mode():
            outs = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in self.spec.inputs])
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {t.name: o.numpy() for t, o in zip(self.spec.outputs, outs)}
