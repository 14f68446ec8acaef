"""The Python API: build a target, open a built target and run its pipeline, read its reports.

The `voxc` command line is a thin layer over these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voxc.compiler.request import build_request
from voxc.core.errors import VoxcError
from voxc.core.target import Manifest, ParityReport  # noqa: F401  (the Target's field types)

__all__ = ["Target", "build", "build_request", "families", "open_target"]


def families() -> list[str]:
    """Names of the model families voxc can build (models/<family>/, plus VOXC_FAMILIES)."""
    from voxc.models.family import registry
    return sorted(registry())


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
        from voxc.compiler.shipped import runners
        return runners(self.folder, self.manifest, runtime, threads)

    def pipeline(self, runtime: str | None = None, threads: int | None = None):
        """The family's dataflow over this target's artifacts (models/pipeline.py)."""
        from voxc.compiler.shipped import pipeline
        return pipeline(self.folder, self.manifest, runtime, threads)


def open_target(folder: str | Path) -> Target:
    """A built target folder, verified: every path inside it and every file matching its recorded sha256,
    parity.json matching the manifest's root record, the verdict agreeing with its rows."""
    from voxc.core import target as schema
    shipped = schema.read(folder)
    bench_path = shipped.folder / "bench.json"
    bench = schema.load_json(bench_path, "benchmark", "run `voxc bench` again") if bench_path.is_file() else None
    return Target(shipped.folder, shipped.manifest, shipped.parity, bench)
