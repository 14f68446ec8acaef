"""Runs the build graph's stages as Ray tasks: `voxc build --executor ray [--address ray://HOST:PORT | auto]`.

Each stage is one Ray task (one CPU). A stage that names resources or labels (a device stage: TensorRT
engines and their parity on a `jetson` or `cuda` node, Core ML on `macos`) runs only on a node that
advertises them (`ray start --resources '{"jetson": 1}'` or `--labels`). Outputs never travel through
Ray's object store: a task writes its entry into the build's cache -- a folder every node mounts, or
an object store (compiler/store.py) -- by the same temporary-folder-and-rename as a local build, and
returns only the record. A task whose worker or node dies is retried (RETRIES times) on any node that
fits; after that the build stops with one line naming the stage. Ray is imported only here, only when
asked for (about 0.4 s to import, 3 s to start a local instance).

Without --address a private local Ray instance is started for the build (num_cpus = --jobs) and shut
down after it. Every node must run the same voxc and dependencies (stage keys hash the code and tool
versions; a node with other code would write other bytes under the driver's keys).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import Future

from voxc.core.errors import VoxcError, first_line

RETRIES = 2
OBJECT_STORE_BYTES = 100 * 2**20    # stages pass only small records through Ray


def _task(fn, *args):
    """Worker side: threads as a local pool worker gets them (Ray sets OMP_NUM_THREADS to the task's CPUs)."""
    import ray

    from voxc.compiler.graph import quiet_torch_logs
    quiet_torch_logs()
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    return fn(*args), ray.get_runtime_context().get_node_id()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes; a closed port is said in one line at once."""
    import socket
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        why = exc.strerror or str(exc) if isinstance(exc, OSError) else "expected HOST:PORT"
        raise VoxcError(f"cannot reach the Ray cluster at {address} ({why}); start one with `ray start --head`, "
                        "or pass --address HOST:PORT, ray://HOST:PORT or auto") from None


class RayExecutor:
    def __init__(self, address: str | None = None, cpus: int = 2, retries: int = RETRIES):
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")    # no GPUs are asked for
        try:
            import ray
        except ImportError:
            raise VoxcError("--executor ray needs Ray: pip install -e '.[ray]'") from None
        self.ray, self.retries, self.owned = ray, retries, False
        if not ray.is_initialized():
            # what a stage reads from the environment: threads, user families, the --data folder
            env = {k: os.environ[k] for k in ("VOXC_THREADS", "VOXC_FAMILIES", "VOXC_DATA") if k in os.environ}
            opts = dict(logging_level=logging.WARNING, runtime_env={"env_vars": env} if env else None)
            if address and address != "auto":
                _reachable(address)
            try:
                if address:
                    ray.init(address=address, **opts)
                else:
                    ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **opts)
            except Exception as exc:  # noqa: BLE001 -- Ray raises ConnectionError, RuntimeError, grpc errors
                msg = first_line(exc) or type(exc).__name__
                raise VoxcError(f"cannot reach the Ray cluster at {address or 'a new local instance'} ({msg}); "
                                "start one with `ray start --head` or pass --address HOST:PORT, ray://HOST:PORT "
                                "or auto") from None
            self.owned = True
        self.remote = ray.remote(_task)
        self.ran_on: dict[str, str] = {}          # stage key -> id of the node that ran it
        self.pending: set = set()

    def offers(self, resources: dict | None = None, labels: dict | None = None) -> bool:
        """Whether some live node advertises these resources and labels."""
        for node in self.ray.nodes():
            if not node.get("Alive"):
                continue
            have, tags = node.get("Resources", {}), node.get("Labels", {}) or {}
            if all(have.get(r, 0) >= n for r, n in (resources or {}).items()) and \
                    all(tags.get(k) == v for k, v in (labels or {}).items()):
                return True
        return False

    def submit(self, fn, *args, resources=None, labels=None) -> Future:
        opts = {"num_cpus": 1, "max_retries": self.retries, "retry_exceptions": False}
        if resources:
            opts["resources"] = dict(resources)
        if labels:
            opts["label_selector"] = dict(labels)
        ref = self.remote.options(**opts).remote(fn, *args)
        self.pending.add(ref)
        key = args[2] if len(args) > 2 and isinstance(args[2], str) else None   # graph calls: (fn, cache, key, ...)
        out: Future = Future()

        def done(f):
            self.pending.discard(ref)
            try:
                result, node = f.result()
            except Exception as exc:  # noqa: BLE001 -- delivered to the scheduler like a pool would
                cause = getattr(exc, "cause", None)
                out.set_exception(cause if isinstance(cause, BaseException) else exc)
                return
            if key:
                self.ran_on[key] = node
            out.set_result(result)
        ref.future().add_done_callback(done)
        return out

    def shutdown(self) -> None:
        for ref in list(self.pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 -- finished or already gone
                pass
        if self.owned:
            self.ray.shutdown()
