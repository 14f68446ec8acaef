"""The build graph: stages as pure functions, content-addressed outputs, a pluggable executor.

A stage's key hashes its name, the source of the code it runs (the module closure of its function
and of the modules it names: its backend, its model family -- core/sources.py), its parameters
(canonical JSON), the content hashes of its input files and upstream outputs, and the versions of
the third-party distributions it runs (derived from what its code imports: core/sources.py
imported_tools). No hand-bumped version numbers. Its output lives in
artifacts/cache/<key>/, written into a temporary folder and renamed into place last, so an
interrupted build never leaves a half-written entry that a later build would trust. Unchanged
keys are cache hits and do no work; a changed input rebuilds only what depends on it. A worker
killed mid-stage (the out-of-memory killer) breaks the local pool: the stages it held run once more
in a fresh pool, and a second death is one line naming the stage.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import os
import queue
import shutil
import threading
import time
import uuid
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import multiprocessing

from voxc.core.errors import VoxcError, first_line
from voxc.core.hashing import canonical, sha256_bytes, sha256_file, sha256_tree
from voxc.core.sources import imported_tools, source_hash
from voxc.core.target import dumps
from voxc.compiler import aimed_kill, cache as cache_mod

META = "stage.json"
HEARTBEAT_POLL_S = 5.0          # how often a waiting build looks at its running stages (progress.waiting)


def read_record(folder: Path) -> dict:
    """The record a stage wrote next to its outputs."""
    return json.loads((Path(folder) / META).read_text())


def plain_params(params) -> dict:
    """A stage's parameters as plain data (what its key hashes): a params dataclass through
    dataclasses.asdict, a dict as it is."""
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else params


def tool_versions(tools: tuple[str, ...]) -> dict[str, str]:
    return {t: version(t) for t in sorted(set(tools))}


@functools.lru_cache(maxsize=None)
def version(tool: str) -> str:
    """An installed distribution's version ("absent" when it is not installed)."""
    try:
        return importlib.metadata.version(tool)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@dataclass
class Stage:
    """One node: fn(out_dir, params, inputs) writes files into out_dir and returns a JSON-able record.

    inputs maps a name to an upstream Stage (its output folder is passed) or to a file Path.
    """
    label: str                      # unique, e.g. "vocoder/export"
    name: str                       # stage kind, e.g. "export"
    fn: Callable[[Path, object, dict], dict]
    params: object = field(default_factory=dict)   # a params dataclass (compiler/plan.py) or a plain dict
    inputs: dict = field(default_factory=dict)
    tools: tuple[str, ...] = ()     # tools it runs that no import names (the rest: `all_tools`)
    code: tuple[str, ...] = ()      # modules it runs beyond fn's own (a backend, a model family)
    after: tuple = ()               # stages that must finish first without being inputs (not in the key)
    resources: dict = field(default_factory=dict)   # custom resources of the node it must run on (not in the key)
    labels: dict = field(default_factory=dict)      # node labels it must run on (not in the key)

    def code_hash(self) -> str:
        return source_hash((self.fn.__module__,) + tuple(self.code))

    def all_tools(self) -> tuple[str, ...]:
        """The distributions whose versions key the stage: what its function imports at any depth, what
        its backend and family modules import when they load (core/sources.imported_tools), and `tools`."""
        derived = imported_tools(self.fn.__module__, self.fn.__name__, tuple(self.code))
        return tuple(sorted(set(derived) | set(self.tools)))

    def fingerprint(self) -> dict:
        """Everything in the key except the upstream content: what the stage is and runs."""
        return {"stage": self.name, "code": self.code_hash(), "params": plain_params(self.params),
                "tools": tool_versions(self.all_tools())}

    def deps(self) -> list["Stage"]:
        return [v for v in self.inputs.values() if isinstance(v, Stage)] + list(self.after)


@dataclass
class Result:
    label: str
    key: str
    path: Path
    record: dict
    cached: bool
    seconds: float


class Executor(Protocol):
    """Anything that runs a picklable call somewhere and returns a Future (local pool, Ray, ...).
    resources/labels: what the node that runs it must offer (only a Ray executor can place by them)."""
    def submit(self, fn: Callable, *args, resources: dict | None = None, labels: dict | None = None) -> Future: ...
    def shutdown(self) -> None: ...


def _local_only(resources, labels) -> None:
    if resources or labels:
        raise VoxcError(f"a stage needs a node offering {resources or labels}; only --executor ray places stages "
                        "on such nodes")


class InlineExecutor:
    """Runs stages one at a time in this process (debugging, tests, single-core hosts), on one thread beside the
    scheduler, so that each stage's line and the heartbeat are printed while the build goes on."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, fn, *args, resources=None, labels=None):
        _local_only(resources, labels)
        fut: Future = Future()
        self._queue.put((fut, fn, args))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="voxc-stage", daemon=True)
            self._thread.start()
        return fut

    def _work(self) -> None:
        quiet_torch_logs()
        while (item := self._queue.get()) is not None:
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():          # cancelled while queued: a stage before it failed
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # delivered to the scheduler like a pool would
                fut.set_exception(exc)

    def shutdown(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread = None


class LocalPoolExecutor:
    """A pool of spawned worker processes; torch and ONNX tools are imported once per worker."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.workers,))

    def submit(self, fn, *args, resources=None, labels=None):
        _local_only(resources, labels)
        return self.pool.submit(fn, *args)

    def restart(self) -> None:
        """A fresh pool after a worker died (a dead worker breaks the whole pool)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._start()

    def shutdown(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the build process dies (even by SIGKILL)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        if os.getppid() == 1:        # the parent died before the call
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _init_worker(workers: int) -> None:
    _die_with_parent()
    from voxc.core import reader_gone
    reader_gone.install()            # a tool's progress output must not fail a stage when the build's reader left
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    quiet_torch_logs()
    import torch
    torch.set_num_threads(threads)


def quiet_torch_logs() -> None:
    """The ONNX exporter logs a warning per missing torchvision op; none of the stack uses them."""
    import logging
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


def _run_stage(fn, cache: str, key: str, params: dict, inputs: dict) -> tuple[dict, float]:
    """Worker side: run into a temporary folder, then rename it into the cache atomically."""
    final = Path(cache) / key
    if (final / META).is_file() and cache_mod.problem(final) is None:   # another build finished it meanwhile
        return json.loads((final / META).read_text()), 0.0
    tmp = Path(cache) / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    disarm = aimed_kill.arm(getattr(fn, "__name__", ""))
    t0 = time.perf_counter()
    try:
        record = fn(tmp, params, {k: Path(v) for k, v in inputs.items()}) or {}
        record = {"key": key, **record, "output_sha256": sha256_tree(tmp, exclude=(META, cache_mod.SEEN)),
                  "files": cache_mod.file_table(tmp)}
        cache_mod.remember(tmp, record["files"])
        text = dumps(record, sort_keys=True)       # strict JSON: a non-finite value becomes null + a reason
        (tmp / META).write_text(text)
        record = json.loads(text)                 # what a later cache hit reads, exactly
        if final.exists():           # a corrupt entry left behind by a crash: never trusted, replaced
            cache_mod.move_aside(Path(cache), key)
        try:
            os.rename(tmp, final)
        except OSError:  # another build finished the same key first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if disarm is not None:
            disarm()
    return record, time.perf_counter() - t0


def _run_in_store(fn, uri: str, key: str, params: dict, refs: dict) -> tuple[dict, float]:
    """Worker side with a shared store (compiler/store.py): inputs come from it, the output goes to it."""
    from voxc.compiler.store import open_store
    store = open_store(uri)
    inputs = {}
    for name, (kind, ref) in refs.items():
        inputs[name] = store.open(ref) if kind == "entry" else store.get_file(ref)
        if inputs[name] is None:
            raise VoxcError(f"input {name} (entry {ref}) is not in the store {uri}")
    record, seconds = _run_stage(fn, str(store.cache_dir()), key, params, inputs)
    store.publish(key, store.cache_dir() / key)
    return record, seconds


class BuildGraph:
    def __init__(self, cache: Path):
        self.cache = Path(cache)
        self.stages: dict[str, Stage] = {}
        self.store = None

    def use_store(self, store) -> None:
        """Run against a shared store (compiler/store.py): its entries are cache hits, workers write to it."""
        self.store = store
        self.cache = Path(store.cache_dir())

    def add(self, stage: Stage) -> Stage:
        if stage.label in self.stages:
            raise ValueError(f"duplicate stage {stage.label}")
        for dep in stage.deps():
            if dep.label not in self.stages:
                raise ValueError(f"{stage.label} depends on unknown stage {dep.label}")
        self.stages[stage.label] = stage
        return stage

    def key(self, stage: Stage, done: dict[str, Result]) -> str:
        inputs = {}
        for name, v in sorted(stage.inputs.items()):
            inputs[name] = done[v.label].record["output_sha256"] if isinstance(v, Stage) else sha256_file(Path(v))
        return sha256_bytes(canonical({**stage.fingerprint(), "inputs": inputs}))[:32]

    def run(self, executor: Executor, progress: Callable[[Result], None] = lambda r: None) -> dict[str, Result]:
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
            probe = self.cache / f".probe-{uuid.uuid4().hex[:6]}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise VoxcError(f"cannot write to the artifacts cache {self.cache} ({exc.strerror}); "
                            "pass --artifacts DIR to a writable folder") from None
        done: dict[str, Result] = {}
        deaths: dict[str, int] = {}
        running: dict[Future, tuple[Stage, str]] = {}
        started: dict[Future, float] = {}
        waiting = getattr(progress, "waiting", None)      # the heartbeat, when progress has one
        pending = list(self.stages.values())
        while pending or running:
            ready = [s for s in pending if all(d.label in done for d in s.deps())]
            while ready:  # cache hits unblock further stages at once
                stage = ready.pop(0)
                pending.remove(stage)
                key = self.key(stage, done)
                entry = self.cache / key
                if self.store is not None:
                    self.store.open(key)             # an object store's entry is fetched into self.cache
                if entry.exists():
                    bad = cache_mod.problem(entry)
                    if bad is None:
                        done[stage.label] = Result(stage.label, key, entry, json.loads((entry / META).read_text()),
                                                   True, 0.0)
                        progress(done[stage.label])
                        ready += [s for s in pending if s not in ready and all(d.label in done for d in s.deps())]
                        continue
                    aside = cache_mod.move_aside(self.cache, key)
                    print(f"voxc: cache entry of {stage.label} is corrupt ({bad}); moved to {aside} and rebuilt",
                          flush=True)
                where = {"resources": stage.resources, "labels": stage.labels}
                if self.store is not None:
                    refs = {k: ("entry", done[v.label].key) if isinstance(v, Stage) else ("file", self.store.put_file(v))
                            for k, v in stage.inputs.items()}
                    call = (_run_in_store, stage.fn, self.store.uri, key, stage.params, refs)
                else:
                    inputs = {k: str(done[v.label].path if isinstance(v, Stage) else v) for k, v in stage.inputs.items()}
                    call = (_run_stage, stage.fn, str(self.cache), key, stage.params, inputs)
                try:
                    fut = executor.submit(*call, **where)
                except BrokenExecutor as exc:        # a worker died since the last look: collected below
                    fut = Future()
                    fut.set_exception(exc)
                running[fut] = (stage, key)
            if not running:
                if pending:
                    raise ValueError("build graph has a cycle: " + ", ".join(s.label for s in pending))
                break
            finished, _ = wait(list(running), timeout=HEARTBEAT_POLL_S, return_when=FIRST_COMPLETED)
            now = time.monotonic()
            for fut in running:
                if fut.running() or fut.done():
                    started.setdefault(fut, now)
            if not finished:
                if waiting is not None:
                    waiting([(running[f][0].label, now - started[f]) for f in running if f in started])
                continue
            if any(isinstance(f.exception(), BrokenExecutor) for f in finished):
                finished = list(running)         # every stage of a broken pool fails: collect them all
                wait(finished)
            died = []
            for fut in finished:
                stage, key = running.pop(fut)
                try:
                    record, seconds = fut.result()
                except BrokenExecutor:
                    died.append(stage)
                    continue
                except VoxcError:
                    for f in running:
                        f.cancel()
                    raise
                except Exception as exc:
                    for f in running:
                        f.cancel()
                    raise VoxcError(f"stage {stage.label} failed: {type(exc).__name__}: "
                                    f"{first_line(exc)}") from exc
                if self.store is not None and self.store.open(key) is None:
                    raise VoxcError(f"stage {stage.label} ran but its entry {key} is not in the store {self.store.uri}")
                done[stage.label] = Result(stage.label, key, self.cache / key, record, False, seconds)
                progress(done[stage.label])
            if died:
                self._after_worker_death(executor, died, deaths)
                pending[:0] = died               # run again, first
        return done

    @staticmethod
    def _after_worker_death(executor, died: list[Stage], deaths: dict[str, int]) -> None:
        """A worker process died (SIGKILL: the out-of-memory killer, an operator): its stages run once more
        in a fresh pool; a stage that was running at two deaths ends the build with one line."""
        for s in died:
            deaths[s.label] = deaths.get(s.label, 0) + 1
        twice = [s.label for s in died if deaths[s.label] > 1]
        if twice or not hasattr(executor, "restart"):
            raise VoxcError(f"a worker process died (killed, e.g. by the out-of-memory killer) while running stage "
                            f"{', '.join(twice or [s.label for s in died])}"
                            f"{' for the second time' if twice else ''}; free some memory or build with fewer "
                            "workers (--jobs 1), then build again: finished stages are kept")
        print(f"voxc: a worker process died (e.g. out of memory) while running {', '.join(s.label for s in died)}; "
              "running it again in a fresh worker", flush=True)
        executor.restart()
