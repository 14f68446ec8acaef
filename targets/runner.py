"""The Runner interface every backend implements (Polygraphy's loader/runner split)."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
