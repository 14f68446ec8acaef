"""`voxc parity`: re-check the artifacts of a built target against its recorded PyTorch reference.

Reads artifacts/<T>/manifest.json, verifies every file's sha256, rebuilds each reference module
from reference.safetensors and its recorded config, reruns the gates over the spec's sweep, and
reruns chained parity of the shipped artifacts per host runtime (the whole chain's perceptual verdict
counts toward the result, as in the build).
"""
from __future__ import annotations

import json
from pathlib import Path

from voxc.compiler import deferred, parity, report
from voxc.core.atomic import write_atomic
from voxc.core.hashing import sha256_path
from voxc.core.errors import VoxcError
from voxc.models.family import family_of, model_spec
from voxc.targets import backend


def load_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise VoxcError(f"no build found at {folder}; run `voxc build --target {folder.name}` first")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VoxcError(f"{path} is not readable JSON ({type(exc).__name__}); rebuild with "
                        f"`voxc build --target {folder.name}`") from None
    if not isinstance(manifest, dict) or not {"target", "models", "preset_config", "profile"} <= set(manifest) \
            or not isinstance(manifest["models"], dict):
        raise VoxcError(f"{path} is not a voxc manifest (it lacks target, models, preset_config or profile); "
                        f"rebuild with `voxc build --target {folder.name}`")
    return manifest


def load_parity(folder: Path) -> list[dict]:
    """The result rows of a target's parity.json (one line if it is missing or malformed)."""
    path = folder / "parity.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise VoxcError(f"{path} is missing; run `voxc parity --target {folder.name}` to write it") from None
    except (OSError, ValueError) as exc:
        raise VoxcError(f"{path} is not readable JSON ({type(exc).__name__}); run `voxc parity --target "
                        f"{folder.name}` to rewrite it") from None
    rows = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"model", "runtime", "precision", "passed"} <= set(r)
                                             for r in rows):
        raise VoxcError(f"{path} is not a voxc parity report; run `voxc parity --target {folder.name}` to rewrite it")
    return rows


def verify_target(artifacts: Path, target: str) -> bool:
    from voxc.calibration.feeds import FeedMaker, sweep_feeds, upstream_graphs
    from voxc.targets.runner import TorchRunner
    folder = artifacts / target
    manifest = load_manifest(folder)
    rows: list[dict] = []
    try:
        previous = load_parity(folder) if (folder / "parity.json").is_file() else []
    except VoxcError:
        previous = []                        # rewritten below from fresh checks
    parity_set = family_of(manifest["preset_config"]).items_hash("parity")
    host = {b for b in manifest["profile"]["backends"] if backend(b).parity == "host"}
    for name, info in manifest["models"].items():
        for f in info["artifacts"] + [info["reference"]]:
            p = folder / f["path"]
            if not p.exists() or sha256_path(p) != f["sha256"]:
                raise VoxcError(f"{p} is missing or altered since the build (sha256 mismatch); "
                                f"rebuild with `voxc build --target {target}`")
        cfg = info["config"]
        spec = model_spec(name, cfg)
        module = _reference(folder / name, cfg, name)
        upstream = upstream_graphs(name, manifest["preset_config"])
        missing = [u for u in upstream if u not in manifest["models"]]
        if missing:
            raise VoxcError(f"{name}: parity needs the upstream graphs {', '.join(missing)} in the same build")
        up = {u: TorchRunner(_reference(folder / u, manifest["models"][u]["config"], u),
                             model_spec(u, manifest["models"][u]["config"])) for u in upstream}
        maker = FeedMaker(name, spec, manifest["preset_config"], up)
        model_rows = []
        for a in info["artifacts"]:
            if a["runtime"] == "portable" or a.get("role") == "weights":
                continue
            if backend(a["runtime"]).parity == "device":  # keep its deferred/merged rows
                model_rows += [r for r in previous if r["model"] == name and r["precision"] == a["precision"]
                               and (r["runtime"] not in host or r.get("checked") or r.get("site"))]
                continue
            runner = backend(a["runtime"]).open(folder / a["path"])
            model_rows += parity.check(spec, module, runner, a["precision"], a["runtime"],
                                       feeds=lambda b, n: sweep_feeds(maker, b, n), data={"parity_set": parity_set})
        info["parity"] = deferred.status(model_rows)
        rows += model_rows
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    chain = _chain(folder, manifest, host)
    passed = report.write_parity(folder, target, rows, chain)
    print(report.parity_markdown(target, rows, chain).split("\n## All checks")[0])
    return passed


def _chain(folder: Path, manifest: dict, host: set[str]) -> dict | None:
    """Chained parity of the target's shipped artifacts on each host runtime (None when the family has
    no chain or the target lacks some of its graphs). A demotion is the build's decision, not re-taken."""
    from voxc.compiler.chain import measure
    from voxc.targets.runner import TorchRunner
    cfg, models = manifest["preset_config"], manifest["models"]
    fam = family_of(cfg)
    if fam.chain is None or not set(fam.graph_names) <= set(models):
        return None
    ref = {n: TorchRunner(_reference(folder / n, i["config"], n), model_spec(n, i["config"])) for n, i in models.items()}
    arts: dict = {}
    precs: dict = {}
    for name, info in models.items():
        for a in info["artifacts"]:
            if a["runtime"] in host and a.get("role") != "weights":
                arts.setdefault(a["runtime"], {})[name] = backend(a["runtime"]).open(folder / a["path"])
                precs.setdefault(a["runtime"], {})[name] = a["precision"]
    arts = {rt: a for rt, a in arts.items() if set(a) == set(models)}
    if not arts:
        return None
    return measure(ref, arts, {rt: precs[rt] for rt in arts}, {n: i["config"] for n, i in models.items()}, cfg)


def _reference(model_dir: Path, cfg: dict, name: str):
    from voxc.models.weights import load_module
    return load_module(name, cfg, model_dir / "reference.safetensors")
