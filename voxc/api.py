"""The Python API: build a target, open a built target and run its pipeline, read its reports.

The `voxc` command line is a thin layer over these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.core.target import Manifest, ParityReport  # noqa: F401  (the Target's field types)


def families() -> list[str]:
    """Names of the model families voxc can build (models/<family>/, plus VOXC_FAMILIES)."""
    from voxc.models.family import registry
    return sorted(registry())


def build_request(target: str = "cpu", family: str = "voxc", preset: str | None = None, *,
                  artifacts: str | Path = "artifacts", models=(), checkpoints: dict | None = None,
                  overrides: dict | None = None, seeded: bool = False, jobs: int = 2, exporter: str = "dynamo",
                  precisions: dict | None = None, margin: float | None = None, retime: bool = False, source: str | Path | None = None,
                  source_files: dict | None = None, data: str | Path | None = None,
                  quantisation: str | Path | dict | None = None):
    """A BuildRequest as `voxc build` makes it: the family's default preset is its trained voice,
    whose committed weights are used unless `seeded` or a checkpoint replaces them. `source` (and
    `source_files`) import a user's own checkpoints of the family (e.g. an EmotiVoice checkout): the
    preset's sizes then come from those files, its length ranges from `preset`. `data`: a folder of
    .wav/.flac files that calibrates and checks instead of the committed sets; `quantisation`: a TOML file
    (or its parsed `options` tables) overriding the int8 settings per runtime and graph."""
    from voxc.compiler.build import BuildRequest
    from voxc.compiler.rung_options import read_user
    from voxc.models.family import family as get_family
    fam = get_family(family)
    preset_name = preset or fam.default_preset
    models = tuple(models) or fam.graph_names
    for m in models:
        fam.graph(m)
    cfg = fam.preset(preset_name)
    cfg.update(overrides or {})
    user = {k: Path(v) for k, v in (checkpoints or {}).items()}
    imported: dict[str, Path] = {}
    if fam.importer and source is None and not source_files and not seeded and not user:
        raise VoxcError(f"family {fam.name} compiles a voice you bring: pass --from DIR (e.g. your EmotiVoice "
                        f"checkout), or --seeded for random weights of the {preset_name} shapes")
    if source is not None or source_files:
        cfg, states = fam.import_voice(source or ".", dict(source_files or {}), cfg)
        extra = {"lexicon.json": cfg["lexicon"]} if cfg.get("lexicon") else {}
        imported = _save_imported(Path(artifacts), fam.name, states, exclude=user, extra=extra)
        preset_name = f"imported ({preset_name} ranges)"
    voice = {} if seeded or imported else fam.committed_weights(preset_name, cfg, models, exclude=user)
    return BuildRequest(target=target, preset=cfg, preset_name=preset_name, models=models,
                        checkpoints={**voice, **imported, **user}, artifacts=Path(artifacts), exporter=exporter,
                        jobs=jobs, precisions=dict(precisions or {}), margin=margin, retime=retime,
                        data=Path(data) if data is not None else None,
                        quantisation=quantisation if isinstance(quantisation, dict) else read_user(quantisation),
                        weight_sources={**{m: "trained voice" for m in voice},
                                        **{m: f"{fam.name} checkpoint" for m in imported},
                                        **{m: "user checkpoint" for m in user}})


def _save_imported(artifacts: Path, family: str, states: dict, exclude=(), extra: dict | None = None) -> dict[str, Path]:
    """Each graph's imported weights as safetensors under artifacts/imports/<content hash>/ (written
    atomically; an import already there is reused); `extra`: other imported data (file name -> JSON
    value, e.g. the voice's lexicon), stored beside them and part of the hash."""
    from safetensors.torch import save

    from voxc.core.atomic import write_atomic
    from voxc.core.hashing import canonical, sha256_bytes
    blobs = {g: save({k: v.contiguous() for k, v in sd.items()}) for g, sd in states.items() if g not in exclude}
    files = {name: canonical(value).encode() for name, value in (extra or {}).items()}
    key = sha256_bytes(b"".join(g.encode() + sha256_bytes(b).encode()
                                for g, b in sorted({**blobs, **files}.items())))[:16]
    folder = artifacts / "imports" / f"{family}-{key}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VoxcError(f"cannot write the imported weights to {folder} ({exc.strerror}); pass --artifacts DIR "
                        "to a writable folder") from None
    for name, blob in files.items():
        if not (folder / name).is_file():
            write_atomic(folder / name, blob)
    out = {}
    for g, blob in blobs.items():
        path = folder / f"{g}.safetensors"
        if not path.is_file() or path.stat().st_size != len(blob):
            write_atomic(path, blob)
        out[g] = path
    return out


def build(target: str = "cpu", family: str = "voxc", preset: str | None = None, **options) -> "Target":
    """Build (or re-use from the cache) a target; returns the built target (check `.passed`)."""
    from voxc.compiler.build import build as run_build
    req = options.pop("request", None) or build_request(target, family, preset, **options)
    run_build(req)
    return open_target(req.artifacts / req.target)


@dataclass
class Target:
    """A built target folder, verified when opened (core/target.py): its typed manifest, its parity
    report and (after `voxc bench`) its benchmark."""
    folder: Path
    manifest: "Manifest"
    parity: "ParityReport"
    bench: dict | None = field(default=None)

    @property
    def passed(self) -> bool:
        return self.parity.passed

    @property
    def status(self) -> str:
        return self.parity.status

    @property
    def config(self) -> dict:
        return self.manifest.preset_config

    def accepted(self) -> dict[str, dict[str, str]]:
        """model -> runtime -> the precision that ships."""
        return {name: {rt: p["accepted"] for rt, p in m.precision.items()} for name, m in self.manifest.models.items()}

    def runners(self, runtime: str | None = None, threads: int | None = None) -> dict:
        """One runner per graph over the accepted artifacts of a runtime this host can run."""
        from voxc.targets import backend
        out = {}
        for name, m in self.manifest.models.items():
            arts = [a for a in m.runnable(runtime) if not backend(a.runtime).unavailable()]
            if not arts:
                raise VoxcError(f"{self.folder}: no artifact of {name} runs on this host"
                                f"{f' with {runtime}' if runtime else ''}")
            a = arts[0]
            out[name] = backend(a.runtime).open(self.folder / a.path, threads=threads)
        return out

    def pipeline(self, runtime: str | None = None, threads: int | None = None):
        """The family's dataflow over this target's artifacts (models/pipeline.py)."""
        from voxc.models.family import family_of
        from voxc.models.pipeline import Pipeline
        from voxc.models.spec import spec_from_json
        specs = {n: spec_from_json(n, m.io) for n, m in self.manifest.models.items()}
        return Pipeline(family_of(self.config), self.config, self.runners(runtime, threads), specs)


def open_target(folder: str | Path) -> Target:
    """A built target folder, verified: every path inside it and every file matching its recorded sha256,
    parity.json matching the manifest's root record, the verdict agreeing with its rows."""
    from voxc.core import target as schema
    shipped = schema.read(folder)
    bench_path = shipped.folder / "bench.json"
    bench = schema.load_json(bench_path, "benchmark", "run `voxc bench` again") if bench_path.is_file() else None
    return Target(shipped.folder, shipped.manifest, shipped.parity, bench)
