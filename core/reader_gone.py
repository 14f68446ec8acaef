"""stdout for a command whose reader may leave early (`voxc build | head -1`): once the pipe breaks, the
rest of the output goes to /dev/null and the command carries on to its own exit status. A build is
never stopped midway by its log reader, and a failed build never turns into exit status 0.
Installed by the CLI (voxc/cli.py) and in every build worker (compiler/graph.py). Standard library only."""
from __future__ import annotations

import os
import sys


class OutlivesReader:
    """Wraps a text stream: writes and flushes that meet a broken pipe point its descriptor at /dev/null."""

    def __init__(self, inner):
        self._inner = inner
        self.reader_gone = False

    def _to_devnull(self) -> None:
        self.reader_gone = True
        fd = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(fd, self._inner.fileno())
        finally:
            os.close(fd)

    def write(self, text: str) -> int:
        try:
            return self._inner.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError:
            self._to_devnull()
            self._inner.flush()             # what was buffered now goes to /dev/null

    def __getattr__(self, name):
        return getattr(self._inner, name)


def install() -> None:
    """Make sys.stdout outlive its reader (idempotent)."""
    if not isinstance(sys.stdout, OutlivesReader) and sys.stdout is not None:
        try:
            sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            return                          # not a real descriptor (a test's capture): nothing to guard
        sys.stdout = OutlivesReader(sys.stdout)
