"""Aimed kills for crash trials (tests/crash_trials.py): SIGKILL the build, or the worker running a
stage, while a stage of a chosen kind is running -- not at a random wall time.

    VOXC_AIMED_KILL="KIND:SECONDS:WHOM:MARKER"

KIND is a stage function's name (export, artifact, parity_check, chain_stage, target_stage, ...);
SECONDS how long after that stage starts; WHOM `build` (the build process: a pool worker's parent)
or `worker` (the process running the stage); MARKER a file path: the kill is armed at most once, in
the first stage that creates it, and writes `fired` into it when it lands; a stage that ends first
disarms it. Unset (always, outside trials), nothing happens. Called by compiler/graph.py around
each stage it runs.
"""
from __future__ import annotations

import os
import signal
import threading

ENV = "VOXC_AIMED_KILL"


def arm(kind: str):
    """A disarm callable when a kill is armed for this stage, else None."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    want, seconds, whom, marker = spec.split(":", 3)
    if want != kind:
        return None
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))   # once per trial
    except FileExistsError:
        return None
    pid = os.getppid() if whom == "build" and _in_pool_worker() else os.getpid()
    timer = threading.Timer(float(seconds), _kill, (pid, marker))
    timer.daemon = True
    timer.start()
    return timer.cancel


def _kill(pid: int, marker: str) -> None:
    with open(marker, "w") as f:
        f.write("fired")
    os.kill(pid, signal.SIGKILL)


def _in_pool_worker() -> bool:
    import multiprocessing
    return multiprocessing.parent_process() is not None
