"""Where the waveform gates' metrics fall for a built vocoder: its fp32/fp16/int8 ONNX Runtime artifacts
and deliberately damaged ones, on held-out parity utterances, against PyTorch (README "Perceptual gates").

    python tests/gate_calibration.py artifacts/cpu [--items 12]

Prints a markdown table, mean and worst per metric. The fp16/int8 files are read from the build's cache
(artifacts/cache/<stage key>/model.onnx), so run it after a build that tried them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from voxc.calibration.sets import load_set
from voxc.core import metrics
from voxc.models.weights import load_module
from voxc.targets.ort_runner import OrtRunner as runner

SHOWN = ("pesq_wb", "stoi", "dnsmos_ovrl_drop", "level_db", "logmel_l1", "snr_db", "mcd_db")


def damaged_onnx(src: Path, dst: Path, how: str) -> Path:
    """fp32 graph with its weights noised (3 % of each tensor's RMS) or one mid-network layer zeroed."""
    model = onnx.load(str(src))
    big = [t for t in model.graph.initializer if len(t.dims) >= 2]
    rng = np.random.default_rng(0)
    targets = big if how == "noise" else [big[len(big) // 2]]
    for t in targets:
        w = numpy_helper.to_array(t)
        w = w + rng.normal(0, 0.03 * np.sqrt(np.mean(w ** 2)), w.shape) if how == "noise" else np.zeros_like(w)
        t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), t.name))
    onnx.save(model, str(dst))
    return dst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/voxc-gate-calibration"))
    a = ap.parse_args()
    info = json.loads((a.folder / "manifest.json").read_text())["models"]["vocoder"]
    cache = a.folder.parent / "cache"
    ref = load_module("vocoder", info["config"], a.folder / "vocoder" / "reference.safetensors").eval()
    max_frames = info["dims"]["frames"]["max"]
    utts = [u for u in load_set("parity") if 64 <= u.frames <= max_frames]
    utts = utts[:: max(1, len(utts) // a.items)][: a.items]
    a.tmp.mkdir(parents=True, exist_ok=True)
    fp32 = cache / info["stage_keys"]["onnxruntime-fp32"] / "model.onnx"
    rng = np.random.default_rng(1)
    rms = lambda w: np.sqrt(np.mean(w ** 2))
    configs = {p: (cache / info["stage_keys"][f"onnxruntime-{p}"] / "model.onnx", None) for p in ("fp32", "fp16", "int8")
               if f"onnxruntime-{p}" in info["stage_keys"]}
    configs.update({
        "weights noised 3%": (damaged_onnx(fp32, a.tmp / "noised.onnx", "noise"), None),
        "one layer zeroed": (damaged_onnx(fp32, a.tmp / "zeroed.onnx", "zero"), None),
        "gain 0.7": (fp32, lambda w: 0.7 * w),
        "white noise 30 dB": (fp32, lambda w: w + rng.normal(0, rms(w) * 10 ** (-30 / 20), w.shape)),
        "white noise 45 dB": (fp32, lambda w: w + rng.normal(0, rms(w) * 10 ** (-45 / 20), w.shape)),
        "1-sample shift": (fp32, lambda w: np.roll(w, 1, axis=-1)),
        "4-tap lowpass": (fp32, lambda w: np.apply_along_axis(lambda x: np.convolve(x, np.ones(4) / 4, "same"), -1, w)),
    })
    import torch
    refs = []
    with torch.inference_mode():
        for u in utts:
            refs.append(ref(torch.from_numpy(u.mel[None])).numpy())
    print(f"{len(utts)} held-out utterances, {sum(u.frames for u in utts) / 62.5:.1f} s; against PyTorch fp32\n")
    print("| artifact | " + " | ".join(f"{k} mean / worst" for k in SHOWN) + " |")
    print("|---|" + "---|" * len(SHOWN))
    for name, (path, fn) in configs.items():
        r = runner(path)
        vals = []
        for u, y in zip(utts, refs):
            out = r.infer({"mel": u.mel[None]})["waveform"]
            out = fn(out).astype(np.float32) if fn else out
            vals.append(metrics.compare("waveform", y, out))
        cells = []
        for k in SHOWN:
            xs = np.array([v[k] for v in vals])
            worst = xs.max() if k in metrics.LOWER_IS_BETTER else xs.min()
            cells.append(f"{xs.mean():.3g} / {worst:.3g}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
