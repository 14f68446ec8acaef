"""Model families as data: what a family declares, and the registry of families.

A family (models/<family>/__init__.py, `FAMILY = Family(...)`) names, once:
- its graphs: module builder and ModelSpec function (callables; `Lazy("module:attr")` imports only when
  called, so the dataflow can be read without PyTorch), and the preset keys and dims each graph depends on;
- its dataflow: an ordered list of steps -- GraphStep (a graph, with its inputs and outputs bound to
  named values) and HostStep (a small named numpy function between graphs); models/pipeline.py runs it;
- its training loops (which graphs each loop trains), its presets, and the committed trained voice;
- how each graph's calibration/parity feeds come from one data item (a Feed: the pipeline inputs
  for an item cut to a length; the pipeline then runs the upstream graphs to make the graph's inputs).

Nothing outside models/<family>/ names a graph of a family: everything else reads this declaration.
A preset carries its family's name (`cfg["family"]`), so init_module/model_spec/model_config find it.
"""
from __future__ import annotations

import copy
import functools
import os
import importlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from voxc.core.errors import VoxcError

# The three kinds of configuration, one name each:
Preset = dict        # a family's whole configuration ("family", "seed", "dims", every graph's keys); a
                     # built target's manifest records it as `preset_config`
GraphConfig = dict   # model_config(): the slice of a preset one graph depends on (its build-key parameters)
HostConfig = dict    # host_config(): the slice of a preset the family's host steps read

# A new family is a folder under models/ and one line here. Families kept outside the tree register
# through the environment (VOXC_FAMILIES="name=importable.module,..."), which build workers inherit.
FAMILIES = {"voxc": "voxc.models.voxc", "emotivoice": "voxc.models.emotivoice"}
_AUDIO_FOLDER = "voxc.calibration.audio_folder"     # a user's --data folder (read where one is active)


def registry() -> dict[str, str]:
    extra = (item.partition("=") for item in os.environ.get("VOXC_FAMILIES", "").split(",") if "=" in item)
    return {**FAMILIES, **{k.strip(): v.strip() for k, _, v in extra}}


@dataclass(frozen=True)
class Lazy:
    """A function named "package.module:attr", imported when first called: how a declaration refers to
    code it must not import yet (graph builders import PyTorch; the dataflow is read without it). Every
    reference a family makes to code is a callable: a function, or a Lazy one."""
    ref: str

    def __call__(self, *args, **kwargs):
        module, _, attr = self.ref.partition(":")
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)


@dataclass(frozen=True)
class Graph:
    """quantisation: the graph's own int8 settings, {runtime or "*": {option: value}} (e.g. {"*":
    {"op_types": "auto", "keep_fp32": ["conv_pre.", "conv_post."]}}; "auto" op types are the weighted
    layer types the exported graph contains). Declared, they replace the target profile's per-model table
    of the same graph name; a user's --quantisation TOML overrides both."""
    name: str
    build: Callable                # graph config -> nn.Module
    spec: Callable                 # graph config -> ModelSpec
    keys: tuple[str, ...]          # preset keys the graph depends on
    dims: tuple[str, ...]          # named dims whose ranges it uses
    quantisation: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GraphStep:
    """Run a graph: each spec input reads the value named inputs.get(name, name); each output is
    stored under outputs.get(name, name). Only the inputs the graph's spec declares are read."""
    graph: str
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    label: str = ""                # when one graph runs twice (e.g. one BERT for prompt and content)

    @property
    def name(self) -> str:
        return self.label or self.graph


@dataclass(frozen=True)
class HostStep:
    """fn(values, cfg) -> dict of new values; reads are required, optional reads may be absent."""
    name: str
    fn: Callable
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class Feed:
    """Pipeline inputs for one data item cut to `length` along the graph's sweep dim.
    make(item, length, cfg) -> values named `provides`; aligned: the item needs phone alignments."""
    make: Callable
    provides: tuple[str, ...]
    aligned: bool = False


@dataclass(frozen=True)
class ChainCheck:
    """What chained parity compares: the family's final output (its kind selects the metrics), the
    inputs that force the timing so outputs line up, and the free-running timing values judged apart."""
    output: str
    kind: str
    forced: tuple[str, ...] = ()
    durations: str | None = None          # predicted durations (exact-match rate)
    frames: str | None = None             # total frame count (drift)
    pin: dict = field(default_factory=dict)   # input name -> value of the reference's free run (forced timing)


@dataclass(frozen=True)
class Speaking:
    """How a family speaks text at run time (voxc/runtime.py, the server): the request options it
    takes and how they become pipeline inputs, its built-in voices, the text-derived values whose
    length a dim's maximum bounds (so long text is split before synthesis, never truncated), and the
    embeddings worth caching with the options their cache key is made of; the speaking rates it
    takes, and how a free-text instruction ("speak cheerfully") becomes its style control."""
    inputs: Callable                       # (options, cfg, given: cached value names, manifest) -> inputs
    voices: Callable                       # cfg -> {voice name: options}
    lengths: tuple[tuple[str, str], ...]   # (pipeline value made from the text, dim bounding its last axis)
    cached: dict = field(default_factory=dict)   # pipeline value -> option names of its cache key
    options: tuple[str, ...] = ()          # option names a request may carry
    speed: tuple[float, float] = (0.25, 4.0)   # the speaking rates it takes (1.0: as trained), inclusive
    instruct: Callable | None = None           # (instructions, cfg, manifest) -> options ({"style": ...}); None: ignored

    def make_inputs(self, options: dict, cfg: dict, given: set, manifest: dict) -> dict:
        return self.inputs(options, cfg, given, manifest)

    def instructions(self, text: str, cfg: dict, manifest: dict) -> dict:
        """The options a free-text instruction maps to through the family's style control (none where
        the target has no style control for it)."""
        return {} if self.instruct is None or not text.strip() else self.instruct(text, cfg, manifest)

    def check_speed(self, speed) -> None:
        """Refuses a speaking rate that is not a finite number within the family's range."""
        import math
        import numbers
        lo, hi = self.speed
        if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not math.isfinite(speed) \
                or not lo <= speed <= hi:
            raise VoxcError(f"speed must be a number from {lo} to {hi} (1.0: normal, 2.0: twice as fast); got {speed!r}")

    def builtin_voices(self, cfg: dict) -> dict:
        return self.voices(cfg)


@dataclass(frozen=True)
class TrainedVoice:
    """A family's committed trained weights: the preset they were trained at and where they live (a
    folder inside an installed package: <graph>.safetensors per trained graph, plus `extras` files)."""
    preset: str
    package: str
    folder: str
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str
    package: str
    graphs: tuple[Graph, ...]
    steps: tuple
    feeds: dict
    presets: dict
    default_preset: str
    item_inputs: Callable                  # (item, cfg, forced: bool) -> pipeline inputs for a whole item
    item_length: Callable                  # (item, dim, cfg) -> the item's natural length along a dim
    item_fits: Callable                    # (item, cfg) -> whether a whole item fits the preset's ranges
    host_config: tuple[str, ...] = ("dims",)   # preset keys the host steps read
    chain: ChainCheck | None = None
    data: Callable = Lazy("voxc.calibration.sets:load_set")      # set name -> data items (calibration, parity)
    data_hash: Callable = Lazy("voxc.calibration.sets:set_hash")  # set name -> content hash (stage keys, manifest)
    importer: Callable | None = None       # (source dir, {file kind: path}, preset) -> (preset, {graph: state dict})
    training: dict = field(default_factory=dict)     # loop name -> graphs it trains
    voice: TrainedVoice | None = None      # committed trained weights
    speaking: Speaking | None = None       # run-time speech: options, voices, length bounds, caches
    mel: object | None = None              # core.mel.MelFrontEnd: how audio becomes the mel its graphs take
                                           # (a user's --data folder is read with it; None: voxc's own)

    @property
    def graph_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.graphs)

    def graph(self, name: str) -> Graph:
        for g in self.graphs:
            if g.name == name:
                return g
        raise VoxcError(f"unknown model '{name}' in family {self.name}: choose from {', '.join(self.graph_names)}")

    def preset(self, name: str | None = None) -> dict:
        name = name or self.default_preset
        if name not in self.presets:
            raise VoxcError(f"unknown preset '{name}' for family {self.name}: choose one of {', '.join(self.presets)}")
        return {"family": self.name, **copy.deepcopy(self.presets[name])}

    def is_preset(self, config: dict) -> bool:
        """Whether a configuration is a whole preset (it makes every graph's spec), not one of its slices."""
        return "seed" in config and all(k in config for g in self.graphs for k in g.keys) \
            and all(d in config.get("dims", {}) for g in self.graphs for d in g.dims)

    def step_of(self, graph: str) -> GraphStep:
        return next(s for s in self.steps if isinstance(s, GraphStep) and s.graph == graph)

    def import_voice(self, source, files: dict, base: dict) -> tuple[dict, dict]:
        """A user's own checkpoints of this family -> (preset, state dict per graph)."""
        if self.importer is None:
            raise VoxcError(f"family {self.name} has no importer: build it from a preset (--preset) and --checkpoint")
        return self.importer(source, files, base)

    def items(self, set_name: str) -> list:
        """The family's data items of a set (real utterances, or sentences for an imported family); with
        a user's audio folder active (`voxc build --data DIR`), that folder's items read with its mel."""
        folder = Lazy(_AUDIO_FOLDER + ":active")()
        if folder is not None:
            return Lazy(_AUDIO_FOLDER + ":load")(folder, self.mel_front_end(), set_name)
        return self.data(set_name)

    def items_hash(self, set_name: str) -> str:
        folder = Lazy(_AUDIO_FOLDER + ":active")()
        if folder is not None:
            return Lazy(_AUDIO_FOLDER + ":folder_hash")(folder, self.mel_front_end())
        return self.data_hash(set_name)

    def mel_front_end(self):
        from voxc.core.mel import MelFrontEnd
        return self.mel or MelFrontEnd()

    def trained_graphs(self) -> tuple[str, ...]:
        """Graphs some training loop trains, in chain order."""
        trained = {g for gs in self.training.values() for g in gs}
        return tuple(n for n in self.graph_names if n in trained)

    def committed_weights(self, preset_name: str, cfg: dict, models, exclude=()) -> dict[str, Path]:
        """For the trained voice's preset with an unmodified configuration: each trained graph's
        committed weights (graphs with a user checkpoint excluded). Other presets or changes: none."""
        folder = self.voice_folder()
        if folder is None or preset_name != self.voice.preset:
            return {}
        ref = self.preset(preset_name)
        out = {}
        for m in models:
            path = folder / f"{m}.safetensors"
            if m in self.trained_graphs() and m not in exclude and path.is_file() \
                    and model_config(m, cfg) == model_config(m, ref):
                out[m] = path
        return out

    def voice_folder(self) -> Path | None:
        if not self.voice:
            return None
        from importlib.resources import files
        return Path(str(files(self.voice.package))) / self.voice.folder


@functools.lru_cache(maxsize=None)
def family(name: str) -> Family:
    known = registry()
    if name not in known:
        raise VoxcError(f"unknown model family '{name}': choose from {', '.join(known)}")
    return importlib.import_module(known[name]).FAMILY


def family_of(cfg: dict) -> Family:
    return family(cfg.get("family", "voxc"))


def model_config(name: str, preset: Preset) -> GraphConfig:
    """The part of a preset that one graph depends on (its build-key parameters)."""
    g = family_of(preset).graph(name)
    sub = {k: preset[k] for k in g.keys}
    sub["dims"] = {d: preset["dims"][d] for d in g.dims}
    sub["seed"] = preset["seed"]
    sub["family"] = preset.get("family", "voxc")
    return sub


def host_config(preset: Preset) -> HostConfig:
    """The part of a preset that the family's host steps read (a feed-making stage's parameters)."""
    fam = family_of(preset)
    return {"family": fam.name, **{k: preset[k] for k in fam.host_config}}


def model_spec(name: str, cfg: dict):
    return family_of(cfg).graph(name).spec(cfg)


def init_module(name: str, cfg: dict):
    """A deterministically initialised module in eval mode (seed mixed with the graph name)."""
    import torch
    torch.manual_seed(cfg["seed"] + zlib.crc32(name.encode()) % 100_000)
    return family_of(cfg).graph(name).build(cfg).eval()
