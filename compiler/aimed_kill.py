"""Aimed kills for crash trials (tests/crash_trials.py): SIGKILL the build, or the worker running a
stage, while a stage of a chosen kind is running -- not at a random wall time.

    VOXC_AIMED_KILL="KIND:SECONDS:WHOM:MARKER"

KIND is a stage function's name (export, artifact, parity_check, chain_stage, target_stage, ...);
SECONDS how long after that stage starts; WHOM `build` (the build process: a pool worker's parent)
or `worker` (the process running the stage); MARKER a file path: the kill fires at most once, in
the first stage that creates it. Unset (always, outside trials), nothing happens. Called by
compiler/graph.py when a stage starts.
"""
from __future__ import annotations

import os
import signal
import threading

ENV = "VOXC_AIMED_KILL"


def arm(kind: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, seconds, whom, marker = spec.split(":", 3)
    if want != kind:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))   # once per trial
    except FileExistsError:
        return
    pid = os.getppid() if whom == "build" and _in_pool_worker() else os.getpid()
    timer = threading.Timer(float(seconds), os.kill, (pid, signal.SIGKILL))
    timer.daemon = True
    timer.start()


def _in_pool_worker() -> bool:
    import multiprocessing
    return multiprocessing.parent_process() is not None
