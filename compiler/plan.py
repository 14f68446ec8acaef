"""The build plan, typed: what compiler/build.py plans and what the stages of the plan are given.

A plan names stages by their labels. Per graph (GraphPlan): weights, export, check, simplify, one
Rung (artifact stage + parity stage) per runtime and precision of its ladder, and a select stage per
host runtime. Per target (TargetPlan): the chain stages (one per host runtime), assemble, and for
device targets bundle, device and merged. BuildPlan holds both.

Stage parameters are frozen dataclasses, one per stage kind. They enter a stage's cache key as
`dataclasses.asdict` (graph.plain_params): canonical JSON of plain data, so equal plans give equal keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from voxc.models.family import GraphConfig, HostConfig, Preset


# ---- the plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rung:
    """One precision of one graph on one runtime: the labels of its artifact and parity stages."""
    runtime: str
    precision: str
    artifact: str
    parity: str
    parity_set: str
    calibration_set: str | None = None


@dataclass(frozen=True)
class GraphPlan:
    """The stages of one graph. rungs: runtime -> precision -> Rung (in ladder order); select:
    host runtime -> the label of its precision-policy stage."""
    name: str
    config: GraphConfig
    weights: str
    export: str
    check: str
    simplify: str
    rungs: dict[str, dict[str, Rung]] = field(default_factory=dict)
    select: dict[str, str] = field(default_factory=dict)
    weights_info: dict = field(default_factory=dict)      # the manifest's `weights` (empty: seeded init)

    def all_rungs(self) -> list[Rung]:
        return [r for by_precision in self.rungs.values() for r in by_precision.values()]

    def on(self, runtime: str) -> GraphPlan:
        """This graph as seen by one runtime's chain: its rungs and select stage on that runtime only."""
        return replace(self, rungs={runtime: self.rungs.get(runtime, {})},
                       select={runtime: self.select[runtime]} if runtime in self.select else {})

    def labels(self) -> list[str]:
        """Every stage label of this graph, upstream first."""
        return [self.weights, self.export, self.check, self.simplify,
                *[x for r in self.all_rungs() for x in (r.artifact, r.parity)], *self.select.values()]


@dataclass
class TargetPlan:
    """The tail of a build: chained parity per host runtime, the target folder, the device stages."""
    chains: list[str] = field(default_factory=list)
    chained: bool = False
    assemble: str = ""
    bundle: str | None = None
    device: str | None = None
    merged: str | None = None

    def shipped(self) -> list[str]:
        """The stages whose outputs make the target folder, later ones winning."""
        return [label for label in (self.assemble, self.bundle, self.device, self.merged) if label]


@dataclass
class BuildPlan:
    graphs: dict[str, GraphPlan]
    target: TargetPlan


@dataclass(frozen=True)
class TargetInfo:
    """What the target folder records about the build: the manifest's header."""
    target: str
    preset_name: str
    preset: Preset
    profile: dict
    data_sets: dict[str, str]
    tools: tuple[str, ...]


# ---- stage parameters, one type per stage kind -----------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GraphParams:
    """check, simplify: which graph, with the preset slice it depends on."""
    model: str
    config: GraphConfig


@dataclass(frozen=True, kw_only=True)
class WeightsParams(GraphParams):
    checkpoint_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExportParams(GraphParams):
    exporter: str = "dynamo"
    opset: int = 20


@dataclass(frozen=True, kw_only=True)
class FeedParams(GraphParams):
    """A stage that makes real-data feeds: its upstream graphs run as reference modules."""
    upstream: dict[str, GraphConfig] = field(default_factory=dict)
    host_config: HostConfig = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RungParams(FeedParams):
    runtime: str
    precision: str
    options: dict = field(default_factory=dict)
    fallback: bool = True                      # the ladder's last rung: its errors fail the build
    calibration_set: str | None = None         # int8 only


@dataclass(frozen=True, kw_only=True)
class ParityParams(FeedParams):
    runtime: str
    precision: str
    parity_set: str
    budgets: dict | None
    sweep: tuple[tuple[int, int], ...]
    options: dict | None = None                # device backends only (their host checks read them)


@dataclass(frozen=True, kw_only=True)
class SelectParams(FeedParams):
    runtime: str
    ladder: tuple[str, ...]
    margin: float
    runs: int
    threads: int
    parity_set: str
    host: dict
    retimed: int | None = None                 # --retime: a fresh key, so the timings run again


@dataclass(frozen=True, kw_only=True)
class ChainParams:
    graphs: dict[str, GraphPlan]               # each graph as seen by the chain's runtime
    preset: Preset
    runtimes: tuple[str, ...]
    parity_set: str


@dataclass(frozen=True, kw_only=True)
class AssembleParams:
    graphs: dict[str, GraphPlan]
    chains: tuple[str, ...]                    # the chain stages' labels
    chained: bool
    info: TargetInfo


@dataclass(frozen=True, kw_only=True)
class BundleParams:
    graphs: dict[str, GraphPlan]
    runtime: str
    assemble: str                              # the assemble stage's label
    info: TargetInfo


@dataclass(frozen=True, kw_only=True)
class MergedParams:
    target: str


@dataclass(frozen=True, kw_only=True)
class DeviceParams:
    target: str
    runner: str
