"""One pipeline: runs a family's dataflow over any set of runners, one utterance at a time.

Runners are anything with infer(dict[str, np.ndarray]) -> dict[str, np.ndarray] keyed by the
graph's spec names: PyTorch modules (targets.runner.TorchRunner) or any backend's artifact runner.
Calibration and parity feeds, chained parity, benchmarks, `voxc synth` and the runtime all run
through here, so the host glue between graphs (summing durations, frame masks, the style branch)
exists once, in the family's declaration.

`run(values, want)` runs only the steps needed to produce `want` from what is given: a value
passed in (a cached embedding, forced durations, a graph's input taken from data) stops the
pipeline from computing it. numpy only; specs give each graph's input names and length ranges:
before a graph runs, every named axis of its inputs is checked against the range the graph was
built and verified for (e.g. the frames a text's predicted durations make), and a length outside it
is refused in one line naming the bound (models/speaking.py splits text so speaking never meets it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from voxc.core.errors import VoxcError
from voxc.models.family import Family, GraphStep, HostConfig, HostStep, Preset, model_spec


@dataclass
class Run:
    values: dict
    timings: dict            # step name -> milliseconds, in execution order


class Pipeline:
    """`config` is a whole preset, or the host steps' slice of one (a build stage's, which passes the
    specs of the graphs it runs: only those graphs are known to it)."""

    def __init__(self, family: Family, config: Preset | HostConfig, runners: dict, specs: dict | None = None):
        self.family, self.cfg, self.runners = family, config, runners
        self._specs = dict(specs or {})
        self._makes_specs = family.is_preset(config)

    def spec(self, graph: str):
        if graph not in self._specs:
            if not self._makes_specs:
                raise VoxcError(f"{self.family.name} pipeline: no spec for graph {graph} (it was given the host "
                                f"configuration and the specs of {', '.join(self._specs) or 'no graph'})")
            self._specs[graph] = model_spec(graph, self.cfg)
        return self._specs[graph]

    def _known(self, graph: str) -> bool:
        """Whether the graph's spec is given or can be made from the configuration."""
        return graph in self._specs or self._makes_specs

    def reads(self, step) -> list[str]:
        if isinstance(step, HostStep):
            return list(step.reads)
        return [step.inputs.get(t.name, t.name) for t in self.spec(step.graph).inputs]

    def writes(self, step) -> list[str]:
        if isinstance(step, HostStep):
            return list(step.writes)
        if not self._known(step.graph):
            return []
        return [step.outputs.get(t.name, t.name) for t in self.spec(step.graph).outputs]

    def producer(self, name: str) -> str | None:
        """The graph whose output `name` is (None for host values)."""
        return next((s.graph for s in self.family.steps if isinstance(s, GraphStep) and name in self.writes(s)), None)

    def plan(self, given, want) -> list:
        """The steps (in dataflow order) that produce `want` from the names in `given`."""
        needed, chosen = set(want) - set(given), []
        for step in reversed(self.family.steps):
            if needed & set(self.writes(step)):
                chosen.append(step)
                needed -= set(self.writes(step))
                needed |= {r for r in self.reads(step) if r not in given}
        if needed:
            raise VoxcError(f"{self.family.name} pipeline: cannot compute {', '.join(sorted(set(want) - set(given)))} "
                            f"without {', '.join(sorted(needed))}")
        return chosen[::-1]

    def graphs_for(self, given, want) -> list[str]:
        """The graphs that run to produce `want` from `given` (e.g. the upstream graphs of a feed)."""
        return list(dict.fromkeys(s.graph for s in self.plan(given, want) if isinstance(s, GraphStep)))

    def run(self, values: dict, want) -> Run:
        values = dict(values)
        timings: dict[str, float] = {}
        for step in self.plan(values, want):
            t0 = time.perf_counter()
            if isinstance(step, HostStep):
                got = step.fn({k: values[k] for k in step.reads + step.optional if k in values}, self.cfg)
            else:
                runner = self.runners.get(step.graph)
                if runner is None:
                    raise VoxcError(f"{self.family.name} pipeline: no runner for graph {step.graph}")
                spec = self.spec(step.graph)
                feeds = {t.name: values[step.inputs.get(t.name, t.name)] for t in spec.inputs}
                self._check_lengths(step, spec, feeds)
                out = runner.infer(feeds)
                got = {step.outputs.get(t.name, t.name): out[t.name] for t in spec.outputs}
            values.update(got)
            timings[step.name] = (time.perf_counter() - t0) * 1e3
        return Run(values, timings)

    def _check_lengths(self, step, spec, feeds: dict) -> None:
        """Every named axis of a graph's inputs within the dim's built range, or one line naming the bound."""
        for t in spec.inputs:
            shape = getattr(feeds[t.name], "shape", ())
            for axis, d in enumerate(t.dims):
                r = spec.dims.get(d) if isinstance(d, str) else None
                if r is None or axis >= len(shape) or r.min <= int(shape[axis]) <= r.max:
                    continue
                n = int(shape[axis])
                what = "frames (from the predicted durations)" if d == "frames" else d
                if n > r.max:
                    bound, fix = f"more than the maximum {r.max}", "pass shorter text (voxc speak and Voice.speak " \
                                                                    f"split it) or rebuild with a larger {d} range"
                else:
                    bound, fix = f"fewer than the minimum {r.min}", f"rebuild with a smaller minimum {d}"
                raise VoxcError(f"{self.family.name} pipeline: {n} {what} for {step.name}, {bound} of the {d} range "
                                f"[{r.min}, {r.max}] the target was built and verified for; {fix}")

    def inputs_of(self, graph: str, values: dict) -> dict:
        """A graph's input feeds (spec names) computed from `values` by its upstream steps."""
        step = self.family.step_of(graph)
        names = {t.name: step.inputs.get(t.name, t.name) for t in self.spec(graph).inputs}
        got = self.run(values, list(names.values())).values
        return {k: got[v] for k, v in names.items()}
