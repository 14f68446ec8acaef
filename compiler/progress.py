"""What a build says while it runs: one line per finished stage, and a heartbeat while stages run longer than
a while (which stages, for how long, how many are done, and an estimate of what is left from the same stages'
durations in earlier builds). The durations are kept beside the cache in `.stage-seconds.json`.
`--quiet` keeps all of it to itself (the build's closing line and its warnings still print).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from voxc.core.atomic import write_atomic

SECONDS_FILE = ".stage-seconds.json"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Called by BuildGraph.run with each finished stage (`__call__`) and, while it waits, with the stages that
    are running (`waiting`); `save()` keeps this build's stage durations for the next build's estimates."""

    def __init__(self, cache: Path, labels: list[str], workers: int = 1, quiet: bool = False,
                 every: float = 30.0):
        self.cache, self.labels, self.workers, self.quiet, self.every = Path(cache), list(labels), workers, quiet, every
        self.finished: set[str] = set()
        self.measured: dict[str, float] = {}
        self.t0 = self.last_said = time.monotonic()
        try:
            self.before = {k: float(v) for k, v in json.loads((self.cache / SECONDS_FILE).read_text()).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self.before = {}

    def __call__(self, result) -> None:
        self.finished.add(result.label)
        if not result.cached:
            self.measured[result.label] = round(result.seconds, 2)
        if not self.quiet:
            status = "cached" if result.cached else f"{result.seconds:6.1f}s"
            print(f"[{len(self.finished):>3}/{len(self.labels)}] {result.label:<44} {status}", flush=True)
            self.last_said = time.monotonic()

    def estimate(self, running: list[tuple[str, float]]) -> float | None:
        """Seconds left by earlier builds' durations of the stages not finished (None: no earlier build)."""
        if not self.before:
            return None
        busy = {label for label, _ in running}
        left = sum(self.before.get(label, 0.0) for label in self.labels
                   if label not in self.finished and label not in busy)
        left += sum(max(0.0, self.before.get(label, 0.0) - elapsed) for label, elapsed in running)
        return left / max(1, self.workers)

    def waiting(self, running: list[tuple[str, float]]) -> None:
        """The heartbeat: said once every `every` seconds without another line."""
        now = time.monotonic()
        if self.quiet or not running or now - self.last_said < self.every:
            return
        self.last_said = now
        stages = ", ".join(f"{label} ({_clock(elapsed)})" for label, elapsed in sorted(running, key=lambda r: -r[1]))
        eta = self.estimate(running)
        left = f"; about {_clock(eta)} left by earlier builds' timings" if eta is not None else ""
        print(f"voxc: running {stages}; {len(self.finished)}/{len(self.labels)} stages done, "
              f"{_clock(now - self.t0)} elapsed{left}", flush=True)

    def save(self) -> None:
        """This build's measured durations over the earlier ones (a stage that did not run keeps its old time)."""
        if not self.measured:
            return
        try:
            write_atomic(self.cache / SECONDS_FILE, json.dumps({**self.before, **self.measured}, sort_keys=True))
        except OSError:
            pass                  # an estimate is a nicety; an unwritable cache is reported by the build itself
