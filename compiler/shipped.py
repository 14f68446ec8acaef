"""A built target folder put to work: runners over its accepted artifacts and its family's pipeline.

The folder is read and verified by core/target.py (every path, every file's sha256); this module only
opens what the manifest lists, through each backend's runner.
"""
from __future__ import annotations

from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.core.target import Manifest


def runners(folder: Path, manifest: Manifest, runtime: str | None = None, threads: int | None = None) -> dict:
    """One runner per graph over the accepted artifacts of a runtime this host can run."""
    from voxc.targets import backend
    out = {}
    for name, m in manifest.models.items():
        listed = m.runnable(runtime)
        arts = [a for a in listed if not backend(a.runtime).unavailable()]
        if not arts:
            why = "; ".join(sorted({backend(a.runtime).unavailable() for a in listed}))
            raise VoxcError(f"{folder}: no artifact of {name} runs on this host{f' with {runtime}' if runtime else ''}"
                            + (f" ({why})" if why else ""))
        a = arts[0]
        out[name] = backend(a.runtime).open(folder / a.path, record=a.extra, threads=threads)
    return out


def pipeline(folder: Path, manifest: Manifest, runtime: str | None = None, threads: int | None = None):
    """The family's dataflow over a target's artifacts (models/pipeline.py)."""
    from voxc.models.family import family_of
    from voxc.models.pipeline import Pipeline
    from voxc.models.spec import spec_from_json
    specs = {n: spec_from_json(n, m.io) for n, m in manifest.models.items()}
    preset = manifest.preset_config
    return Pipeline(family_of(preset), preset, runners(folder, manifest, runtime, threads), specs)
