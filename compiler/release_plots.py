"""Plots of the release report (compiler/release.py), as PNG bytes: log-mel spectrograms of a reference
and an artifact utterance with their difference, and a model's parity metrics against sweep length.
matplotlib with the Agg backend (no display); each figure is closed once drawn.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from voxc.core import audio  # noqa: E402
from voxc.core.metrics import LOWER_IS_BETTER  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def spectrograms(ref: np.ndarray, out: np.ndarray, title: str) -> bytes:
    """Log-mel of the reference, of the artifact and their difference (artifact - reference), side by side."""
    a, b = audio.log_mel(np.asarray(ref, np.float32).reshape(-1)), audio.log_mel(np.asarray(out, np.float32).reshape(-1))
    n = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :n], b[..., :n]
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    diff = b - a
    lim = max(float(np.abs(diff).max()), 1e-6)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3), sharey=True)
    for ax, data, name, kw in ((axes[0], a, "reference (PyTorch)", {"vmin": lo, "vmax": hi, "cmap": "magma"}),
                               (axes[1], b, "artifact", {"vmin": lo, "vmax": hi, "cmap": "magma"}),
                               (axes[2], diff, f"difference (max |d| {lim:.3g})", {"vmin": -lim, "vmax": lim, "cmap": "coolwarm"})):
        im = ax.imshow(data, origin="lower", aspect="auto", interpolation="nearest", **kw)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("frame")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    axes[0].set_ylabel("mel bin")
    fig.suptitle(title, fontsize=10, y=1.04)
    return _png(fig)


def _plain_axis(ax, values: list[float]) -> None:
    """Tick labels a reader can read: no "1e-13+1e-1" offset; a log axis when positive values span decades."""
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    pos = [v for v in values if v > 0]
    if pos and len(pos) == len(values) and max(pos) / min(pos) > 1e3:
        ax.set_yscale("log")
    elif values and max(values) - min(values) < 1e-3 * max(1.0, abs(max(values))):
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.6g"))


def metric_vs_length(model: str, rows: list[dict]) -> bytes | None:
    """One panel per output.metric of a model's parity rows (numeric values only), a line per
    runtime/precision, against sweep length (worst over batch sizes). None when no row has a value
    at a sweep length (e.g. only spec checks on the host, the sweep deferred to the device)."""
    series: dict = {}
    for r in rows:
        v = r.get("value")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or int(r["length"]) <= 0:
            continue                      # no value, or a check of the whole artifact (no sweep length)
        panel = series.setdefault(f"{r['output']}.{r['metric']}", {})
        pts = panel.setdefault(f"{r['runtime']} {r['precision']}", {})
        pts.setdefault(int(r["length"]), []).append(float(v))
    if not series:
        return None
    cols = min(4, len(series))
    nrows = -(-len(series) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False)
    for ax, (name, lines) in zip(axes.flat, sorted(series.items())):
        for label, pts in sorted(lines.items()):
            xs = sorted(pts)
            worst = max if name.rsplit(".", 1)[1] in LOWER_IS_BETTER else min
            ax.plot(xs, [worst(pts[x]) for x in xs], marker="o", ms=3, label=label)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("length", fontsize=7)
        _plain_axis(ax, [v for pts in lines.values() for vals in pts.values() for v in vals])
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.suptitle(f"{model}: parity metrics vs length", fontsize=10)
    fig.tight_layout()
    return _png(fig)
