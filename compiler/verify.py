"""`voxc parity`: re-check the artifacts of a built target against its recorded PyTorch reference.

Reads the target folder through core/target.py (paths, every file's sha256, the root record), rebuilds each reference module
from reference.safetensors and its recorded config, reruns the gates over the spec's sweep, and
reruns chained parity of the shipped artifacts per host runtime (the whole chain's perceptual verdict
counts toward the result, as in the build).
"""
from __future__ import annotations

import json
from pathlib import Path

from voxc.compiler import deferred, parity, report
from voxc.core import target as schema
from voxc.core.atomic import artifacts_lock
from voxc.core.errors import VoxcError
from voxc.models.family import family_of, model_spec
from voxc.targets import backend


def load_manifest(folder: Path) -> dict:
    """The manifest of a built, verified target folder (core/target.py checks it whole)."""
    return schema.read(folder).manifest.doc


def verify_target(artifacts: Path, target: str) -> bool:
    """Re-run a built target's parity and rewrite its reports, holding the artifacts folder's writer lock."""
    with artifacts_lock(artifacts, create=False):
        return _verify_target(Path(artifacts), target)


def _verify_target(artifacts: Path, target: str) -> bool:
    from voxc.calibration.feeds import FeedMaker, sweep_feeds, upstream_graphs
    from voxc.targets.runner import TorchRunner
    folder = artifacts / target
    shipped = schema.read(folder)          # paths, sha256 of every file, the root record over parity.json
    m = shipped.manifest
    previous = shipped.parity.results
    rows: list[dict] = []
    doc = json.loads(json.dumps(m.doc))
    parity_set = family_of(m.preset_config).items_hash("parity")
    host = {b for b in m.backends if backend(b).parity == "host"}
    for name, info in m.models.items():
        spec = model_spec(name, info.config)
        module = reference_module(folder / name, info.config, name)
        upstream = upstream_graphs(name, m.preset_config)
        missing = [u for u in upstream if u not in m.models]
        if missing:
            raise VoxcError(f"{name}: parity needs the upstream graphs {', '.join(missing)} in the same build")
        up = {u: TorchRunner(reference_module(folder / u, m.models[u].config, u), model_spec(u, m.models[u].config))
              for u in upstream}
        maker = FeedMaker(name, spec, m.preset_config, up)
        model_rows = []
        for a in info.runnable():
            if backend(a.runtime).parity == "device":  # keep its deferred/merged rows
                model_rows += [r for r in previous if r["model"] == name and r["precision"] == a.precision
                               and (r["runtime"] not in host or r.get("checked") or r.get("site"))]
                continue
            runner = backend(a.runtime).open(folder / a.path)
            model_rows += parity.check(spec, module, runner, a.precision, a.runtime,
                                       feeds=lambda b, n: sweep_feeds(maker, b, n), data={"parity_set": parity_set})
        doc["models"][name]["parity"] = deferred.status(model_rows)
        rows += model_rows
    chain = _chain(folder, m, host)
    pdoc, markdown, passed = report.parity_doc(target, rows, chain)
    schema.rewrite_reports(folder, doc, pdoc, markdown)
    print(markdown.split("\n## All checks")[0])
    return passed


def _chain(folder: Path, m: schema.Manifest, host: set[str]) -> dict | None:
    """Chained parity of the target's shipped artifacts on each host runtime (None when the family has
    no chain or the target lacks some of its graphs). A demotion is the build's decision, not re-taken."""
    from voxc.compiler.chain import measure
    from voxc.targets.runner import TorchRunner
    preset, models = m.preset_config, m.models
    fam = family_of(preset)
    if fam.chain is None or not set(fam.graph_names) <= set(models):
        return None
    ref = {n: TorchRunner(reference_module(folder / n, i.config, n), model_spec(n, i.config)) for n, i in models.items()}
    arts: dict = {}
    precs: dict = {}
    for name, info in models.items():
        for a in info.runnable():
            if a.runtime in host:
                arts.setdefault(a.runtime, {})[name] = backend(a.runtime).open(folder / a.path)
                precs.setdefault(a.runtime, {})[name] = a.precision
    arts = {rt: a for rt, a in arts.items() if set(a) == set(models)}
    if not arts:
        return None
    return measure(ref, arts, {rt: precs[rt] for rt in arts}, {n: i.config for n, i in models.items()}, preset)


def reference_module(model_dir: Path, preset: dict, name: str):
    from voxc.models.weights import load_module
    return load_module(name, preset, model_dir / "reference.safetensors")
