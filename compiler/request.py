"""What `voxc build` builds: a BuildRequest made from a family, a preset, checkpoints and options.

The family's default preset is its trained voice, whose committed weights are used unless `seeded` or a
checkpoint replaces them; a user's own checkpoints of the family are imported into artifacts/imports/.
"""
from __future__ import annotations

from pathlib import Path

from voxc.core.errors import VoxcError


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
    config = fam.preset(preset_name)
    config.update(overrides or {})
    user = {k: Path(v) for k, v in (checkpoints or {}).items()}
    imported: dict[str, Path] = {}
    if fam.importer and source is None and not source_files and not seeded and not user:
        raise VoxcError(f"family {fam.name} compiles a voice you bring: pass --from DIR (e.g. your EmotiVoice "
                        f"checkout), or --seeded for random weights of the {preset_name} shapes")
    if source is not None or source_files:
        config, states = fam.import_voice(source or ".", dict(source_files or {}), config)
        extra = {"lexicon.json": config["lexicon"]} if config.get("lexicon") else {}
        imported = _save_imported(Path(artifacts), fam.name, states, exclude=user, extra=extra)
        preset_name = f"imported ({preset_name} ranges)"
    voice = {} if seeded or imported else fam.committed_weights(preset_name, config, models, exclude=user)
    return BuildRequest(target=target, preset=config, preset_name=preset_name, models=models,
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
