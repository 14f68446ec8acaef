"""INT8 choices made from the graph and its data: which op types to quantise, which layers hurt the audio
most, how many of them to keep float, and which activation calibration to use.

- resolve_op_types: `op_types = "auto"` (a family's declaration, or a user's TOML) becomes the weighted
  layer types the exported graph contains (Conv and ConvTranspose for a HiFi-GAN; MatMul/Gemm for a
  transformer), so no graph inherits another's tuning by its name.
- rank_layers: a one-shot sensitivity ranking of every weighted layer, from two passes over the
  calibration items on the PyTorch reference (no build per layer). Pass 1 records each layer's input and
  output ranges. Pass 2 runs the model once per item with a hook on every layer that computes the noise
  its int8 version would add at its output (as a QDQ graph runs it: per-channel symmetric weights, uint8
  asymmetric input and output at the recorded ranges) and attaches a zero probe there; one backward pass of <r, output> for a random r gives
  every probe's gradient J_l^T r, and (r . J_l n_l)^2 is an unbiased estimate of ||J_l n_l||^2, the
  energy that layer's quantisation noise reaches the output with. The score is that energy relative to
  the output's (summed over items and probes): the noise-to-signal ratio each layer alone would cause.
- mixed_precision: the search over that ranking the ORT int8 rung runs when its options carry a
  `search` table: each calibration method named is tried with every layer quantised; the first in the
  list that reaches `target` is kept (the default lists static QDQ first, the standard form every ORT
  execution provider reads; "dynamic" -- int8 matmuls with float outputs, targets/int8_matmul.py -- keeps
  more of the signal and ran as fast on a HiFi-GAN), else the best-scoring one;
  then the top-k ranked layers are kept float for k along `steps` until the validation score (the int8
  gates, targets/sensitivity.score) reaches `target`. The smallest passing k (the most quantised, so the
  fastest graph that keeps the audio) is chosen; when none passes, the best score found, whose rung then
  fails its parity gates honestly and falls back.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

QUANTISABLE = ("Conv", "ConvTranspose", "MatMul", "Gemm")
SEARCH_DEFAULTS = {"methods": ["minmax", "percentile", "dynamic"], "steps": [0, 1, 2, 4, 6, 8], "target": 0.8,
                   "ranking_items": 8, "probes": 2, "seed": 0}


def resolve_op_types(model, op_types) -> list[str]:
    """The op types to quantise: as given, or for "auto" the QUANTISABLE types present with a weight."""
    if op_types != "auto":
        return list(op_types)
    params = {i.name for i in model.graph.initializer}
    present = {n.op_type for n in model.graph.node if n.op_type in QUANTISABLE and any(i in params for i in n.input)}
    return [t for t in QUANTISABLE if t in present]


def search_settings(options: dict, methods: list[str] | None = None) -> dict | None:
    """The `search` table of the int8 options merged over SEARCH_DEFAULTS, with `methods` as the default
    methods where the backend's differ (None: no search)."""
    from voxc.core.errors import VoxcError
    table = options.get("search")
    if not table:
        return None
    s = {**SEARCH_DEFAULTS, **({"methods": methods} if methods else {}), **(table if isinstance(table, dict) else {})}
    unknown = set(s) - set(SEARCH_DEFAULTS)
    if unknown or not s["methods"] or not s["steps"]:
        raise VoxcError(f"int8 search: unknown keys {sorted(unknown)} or empty methods/steps; known: "
                        f"{', '.join(SEARCH_DEFAULTS)}")
    return s


def _layers(module) -> dict:
    from torch import nn
    kinds = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)
    return {name: m for name, m in module.named_modules() if isinstance(m, kinds)}


def _fake_weight(m, bits: int):
    import torch
    from torch import nn
    w = m.weight.detach()
    axis = 1 if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d)) else 0
    dims = tuple(d for d in range(w.dim()) if d != axis)
    qmax = 2 ** (bits - 1) - 1
    scale = torch.clamp(w.abs().amax(dim=dims, keepdim=True), min=1e-12) / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def _fake_act(x, lo: float, hi: float):
    import torch
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zero = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _apply(m, x, w):
    from torch import nn
    from torch.nn import functional as F
    if isinstance(m, nn.Linear):
        return F.linear(x, w, m.bias)
    if isinstance(m, nn.ConvTranspose1d):
        return F.conv_transpose1d(x, w, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    if isinstance(m, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, w, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    return m._conv_forward(x, w, m.bias)


def rank_layers(module, feeds: list[dict], input_names: list[str], weight_bits: int = 7, probes: int = 2,
                seed: int = 0) -> list[tuple[str, float]]:
    """(layer name, noise-to-signal ratio at the output) for every weighted layer, most sensitive first."""
    import torch
    module = module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    layers = _layers(module)
    ranges = {n: [np.inf, -np.inf, np.inf, -np.inf] for n in layers}    # input lo, hi; output lo, hi
    handles = []

    def observe(name):
        def hook(m, inputs, output):
            x, r = inputs[0], ranges[name]
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
            r[2], r[3] = min(r[2], float(output.min())), max(r[3], float(output.max()))
        return hook

    args = [tuple(torch.from_numpy(np.ascontiguousarray(f[k])) for k in input_names) for f in feeds]
    try:
        handles = [m.register_forward_hook(observe(n)) for n, m in layers.items()]
        with torch.no_grad():
            for a in args:
                module(*a)
    finally:
        for h in handles:
            h.remove()
    weights = {n: _fake_weight(m, weight_bits) for n, m in layers.items()}
    noise, probe = {}, {}

    def inject(name):
        def hook(m, inputs, output):
            with torch.no_grad():
                lo, hi, out_lo, out_hi = ranges[name]
                quantised = _apply(m, _fake_act(inputs[0].detach(), lo, hi), weights[name])
                noise[name] = _fake_act(quantised, out_lo, out_hi) - output.detach()
            probe[name] = torch.zeros_like(output, requires_grad=True)
            return output + probe[name]
        return hook

    energy = dict.fromkeys(layers, 0.0)
    signal = 0.0
    gen = torch.Generator().manual_seed(seed)
    try:
        handles = [m.register_forward_hook(inject(n)) for n, m in layers.items()]
        for a in args:
            out = module(*a)
            out = out[0] if isinstance(out, (tuple, list)) else out
            signal += float((out.detach() ** 2).sum())
            for k in range(probes):
                r = torch.randn(out.shape, generator=gen)
                grads = torch.autograd.grad((out * r).sum(), [probe[n] for n in layers], retain_graph=k < probes - 1,
                                            allow_unused=True)
                for n, g in zip(layers, grads):
                    if g is not None:
                        energy[n] += float((g * noise[n]).sum()) ** 2 / probes
    finally:
        for h in handles:
            h.remove()
    scores = {n: e / max(signal, 1e-20) for n, e in energy.items()}
    return sorted(scores.items(), key=lambda kv: -kv[1])


def mixed_precision(ranking: list[tuple[str, list[str], float]], evaluate: Callable[[str, list[str]], float],
                    settings: dict) -> dict:
    """ranking: (layer, its graph nodes, score), most sensitive first; evaluate(method, float nodes) -> the
    validation score (< 1 passes, `target` leaves headroom). Returns the search's record; `method` and
    `kept_fp32` (node names) are its choice."""
    trials = []

    def trial(method, k):
        kept = [node for _, nodes, _ in ranking[:k] for node in nodes]
        score = evaluate(method, kept)
        trials.append({"method": method, "float_layers": k, "layers": [name for name, _, _ in ranking[:k]],
                       "score": score})
        return score

    base = {m: trial(m, 0) for m in settings["methods"]}
    passing = [m for m in settings["methods"] if base[m] <= settings["target"]]
    method = passing[0] if passing else min(base, key=base.get)
    chosen = next(t for t in trials if t["method"] == method)
    if base[method] > settings["target"]:
        for k in sorted({k for k in settings["steps"] if 0 < k <= len(ranking)}):
            if trial(method, k) <= settings["target"]:
                chosen = trials[-1]
                break
        else:
            chosen = min((t for t in trials if t["method"] == method), key=lambda t: t["score"])
    kept = [node for name, nodes, _ in ranking if name in chosen["layers"] for node in nodes]
    return {"ranking": [{"layer": n, "nsr": float(f"{s:.4g}")} for n, _, s in ranking], "trials": trials,
            "target": settings["target"], "method": method, "float_layers": chosen["layers"], "kept_fp32": kept,
            "score": chosen["score"], "passed": chosen["score"] <= settings["target"]}
