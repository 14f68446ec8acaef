"""Real-data inputs for each graph: INT8 calibration batches and parity sweep points.

Every graph is fed from the committed sets (calibration/sets.py), never from random numbers. The
family says, per graph, how one data item cut to a length becomes pipeline inputs (its Feed); the
family's pipeline then runs the upstream graphs on them (normally TorchRunners on the FP32 reference
modules) up to the graph's own inputs. So the encoders and vocoder get real log-mels, the acoustic
encoder real phonemes plus the embeddings its upstream encoders compute from the same utterance,
and the decoder the states the reference modules compute from real phonemes and aligned durations.

Sweep points cut or tile one utterance per batch item to the requested length, so parity runs at
min / opt / export / >2x export / max lengths on held-out speech. Items of a batch are padded with
zeros to a common size along each named dim and cut to the spec's maximum.
"""
from __future__ import annotations

import numpy as np

from voxc.calibration.sets import Utterance
from voxc.core.errors import VoxcError
from voxc.models.family import family_of
from voxc.models.pipeline import Pipeline

PARITY_SET, CALIBRATION_SET = "parity", "calibration"


def upstream_graphs(name: str, cfg: dict) -> list[str]:
    """The graphs whose outputs a graph's real-data feeds need (run as references)."""
    fam = family_of(cfg)
    pipe = Pipeline(fam, cfg, {})
    step = fam.step_of(name)
    want = [step.inputs.get(t.name, t.name) for t in pipe.spec(name).inputs]
    return pipe.graphs_for(fam.feeds[name].provides, want)


class FeedMaker:
    """Builds feeds for one graph from data items; `upstream` maps graph name -> runner."""

    def __init__(self, name: str, spec, cfg: dict, upstream: dict | None = None, specs: dict | None = None):
        self.name, self.spec, self.cfg = name, spec, cfg
        self.family = family_of(cfg)
        self.feed = self.family.feeds.get(name)
        if self.feed is None:
            raise VoxcError(f"no real-data feeds for graph '{name}'")
        self.pipeline = Pipeline(self.family, cfg, dict(upstream or {}), {**(specs or {}), name: spec})
        try:
            self.pipeline.plan(self.feed.provides, self._wanted())
        except VoxcError:
            raise VoxcError(f"{name}: real-data inputs need its upstream graphs; got {', '.join(upstream or {}) or 'none'}")
        missing = [u for u in self.pipeline.graphs_for(self.feed.provides, self._wanted()) if u not in self.pipeline.runners]
        if missing:
            raise VoxcError(f"{name}: real-data inputs need the upstream graphs {', '.join(missing)}")

    def _wanted(self) -> list[str]:
        step = self.family.step_of(self.name)
        return [step.inputs.get(t.name, t.name) for t in self.spec.inputs]

    def item(self, u: Utterance, n: int) -> dict[str, np.ndarray]:
        return self.pipeline.inputs_of(self.name, self.feed.make(u, n, self.cfg))

    def batch(self, utts: list[Utterance], n: int) -> dict[str, np.ndarray]:
        items = [self.item(u, n) for u in utts]
        out = {}
        for t in self.spec.inputs:
            arrays = [i[t.name] for i in items]
            size = [max(a.shape[k] for a in arrays) for k in range(arrays[0].ndim)]
            padded = [np.pad(a, [(0, s - d) for s, d in zip(size, a.shape)]) for a in arrays]
            joined = np.concatenate(padded)
            for axis, d in enumerate(t.dims):   # a named dim never exceeds the spec's range
                if isinstance(d, str) and d in self.spec.dims and d != "batch":
                    joined = np.take(joined, np.arange(min(joined.shape[axis], self.spec.dims[d].max)), axis=axis)
            out[t.name] = np.ascontiguousarray(joined)
        return out


def same_data(fam, set_name: str, planned: str | None) -> None:
    """A stage reads the data its key names: the set this process sees must hash to the one the build
    planned with (a --data folder not visible on a Ray node, or at another path, would otherwise feed other
    data under the same key)."""
    if not planned:
        return
    here = fam.items_hash(set_name)
    if here != planned:
        import platform
        raise VoxcError(f"this worker ({platform.node()}) sees other {set_name} data ({here[:12]}) than the build "
                        f"planned with ({planned[:12]}): a --data folder must be readable at the same path on every "
                        "node of the build")


def usable(name: str, utts: list[Utterance], cfg: dict) -> list[Utterance]:
    """Graphs fed phonemes need aligned utterances; mel-fed graphs take every utterance."""
    return [u for u in utts if u.aligned] if family_of(cfg).feeds[name].aligned else list(utts)


def sweep_feeds(maker: FeedMaker, batch: int, length: int, set_name: str = PARITY_SET) -> dict[str, np.ndarray]:
    """Held-out real inputs for one sweep point (deterministic: utterances picked by length)."""
    utts = usable(maker.name, maker.family.items(set_name), maker.cfg)
    count = length if maker.spec.sweep_dim == "batch" else batch   # a label table sweeps the batch axis
    start = (7 * length + batch) % len(utts)
    return maker.batch([utts[(start + i) % len(utts)] for i in range(count)], length)


def calibration_feeds(maker: FeedMaker, count: int, set_name: str = CALIBRATION_SET,
                      max_length: int | None = None) -> list[dict[str, np.ndarray]]:
    """Batch-1 calibration inputs at each utterance's natural length, clipped to the spec's range
    (and to max_length, which bounds calibration time)."""
    spec = maker.spec
    d = spec.dims[spec.sweep_dim]
    utts = usable(maker.name, maker.family.items(set_name), maker.cfg)
    if not utts:
        raise VoxcError(f"calibration set '{set_name}' has no utterances usable for {maker.name}")
    step = max(1, len(utts) // max(count, 1))
    out = []
    for u in utts[::step][:count]:
        natural = maker.family.item_length(u, spec.sweep_dim, maker.cfg)
        hi = min(d.max, max_length or d.max)
        out.append(maker.batch([u], int(np.clip(natural, d.min, hi))))
    return out
