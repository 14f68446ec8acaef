"""Which way each parity metric passes: errors pass at or below their budget, similarities at or above."""
from __future__ import annotations

import math

LOWER_IS_BETTER = {"max_abs", "rel_l2", "frame_drift", "mcd_db", "logmel_l1", "mrstft"}


def passes(metric: str, value: float, tolerance: float) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return value <= tolerance if metric in LOWER_IS_BETTER else value >= tolerance
