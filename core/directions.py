"""Which way each parity metric passes: errors pass at or below their budget, similarities at or above;
a budget of None records the metric as a diagnostic (reported, never failing)."""
from __future__ import annotations

import math

LOWER_IS_BETTER = {"max_abs", "rel_l2", "frame_drift", "mcd_db", "logmel_l1", "mrstft", "level_db",
                   "dnsmos_sig_drop", "dnsmos_bak_drop", "dnsmos_ovrl_drop"}


def passes(metric: str, value: float, tolerance: float | None) -> bool:
    if tolerance is None:
        return True
    if value is None or not math.isfinite(value):
        return False
    return value <= tolerance if metric in LOWER_IS_BETTER else value >= tolerance
