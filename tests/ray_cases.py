"""The build graph on Ray (compiler/ray_executor.py, compiler/store.py, compiler/device_stage.py): a local
two-node cluster (ray.cluster_utils, 1 CPU each, no dashboard) whose second node advertises `jetson`.

Stages spread over both nodes, device stages only on the jetson node, a killed worker or node is
retried elsewhere or fails the build naming the stage, no partial entry is ever visible, a second
build is all cache hits from the shared store, and a Ray build ships the bytes a local build ships."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from voxc.compiler import cache as cache_mod  # noqa: E402
from voxc.compiler.graph import BuildGraph, Stage  # noqa: E402
from voxc.compiler.ray_executor import RayExecutor  # noqa: E402
from voxc.compiler.store import open_store  # noqa: E402
from voxc.core.errors import VoxcError  # noqa: E402

HERE = Path(__file__).parent
MB = 2**20


@pytest.fixture(scope="module")
def cluster():
    """head (1 CPU) + device node (1 CPU, resource jetson); workers can import this module."""
    from ray.cluster_utils import Cluster
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * MB,
                                                      "include_dashboard": False})
    device = c.add_node(num_cpus=1, resources={"jetson": 1}, object_store_memory=80 * MB)
    c.wait_for_nodes(timeout=60)
    try:
        yield c, device.node_id
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


@pytest.fixture
def executor(cluster):
    ex = RayExecutor(cluster[0].address)
    yield ex
    ex.shutdown()


def nap(out: Path, params: dict, inputs: dict) -> dict:
    time.sleep(params.get("sleep", 0))
    text = params["text"] + "".join((Path(p) / "out.txt").read_text() for p in inputs.values() if Path(p).is_dir())
    (out / "out.txt").write_text(text)
    return {"length": len(text)}


def die_once(out: Path, params: dict, inputs: dict) -> dict:
    """Kills its own worker process (SIGKILL) on the first attempt, after writing half an output."""
    (out / "half.txt").write_text("half-written")
    marker = Path(params["marker"])
    if not marker.exists() or params.get("always"):
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    (out / "out.txt").write_text("survived")
    return {}


def wait_then_write(out: Path, params: dict, inputs: dict) -> dict:
    Path(params["started"]).write_text(str(os.getpid()))
    time.sleep(params["sleep"])
    (out / "out.txt").write_text("done")
    return {}


def visible_entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if not p.name.startswith(".") and p.name != "files"]


def test_stages_spread_over_nodes_and_device_stages_stay_on_the_device_node(cluster, executor, tmp_path):
    c, device_node = cluster
    g = BuildGraph(tmp_path / "cache")
    cpu = [g.add(Stage(f"cpu{i}", "nap", nap, {"text": f"c{i}", "sleep": 2})) for i in range(4)]
    dev = [g.add(Stage(f"dev{i}", "nap", nap, {"text": f"d{i}"}, {"in": cpu[i]}, resources={"jetson": 1}))
           for i in range(2)]
    results = g.run(executor)
    on = {label: executor.ran_on[r.key] for label, r in results.items()}
    assert {on[s.label] for s in dev} == {device_node}
    assert len({on[s.label] for s in cpu}) == 2, on                  # both nodes took CPU stages
    assert (results["dev1"].path / "out.txt").read_text() == "d1c1"


def test_a_device_stage_without_ray_is_refused_in_one_line(tmp_path):
    from voxc.compiler.graph import InlineExecutor
    g = BuildGraph(tmp_path)
    g.add(Stage("dev", "nap", nap, {"text": "x"}, resources={"jetson": 1}))
    with pytest.raises(VoxcError, match="only --executor ray places stages"):
        g.run(InlineExecutor())


def test_a_killed_worker_is_retried_and_no_partial_entry_is_visible(executor, tmp_path):
    g = BuildGraph(tmp_path / "cache")
    g.add(Stage("fragile", "die_once", die_once, {"marker": str(tmp_path / "marker")}))
    results = g.run(executor)
    assert (tmp_path / "marker").read_text() == "died"              # the first attempt did die
    assert (results["fragile"].path / "out.txt").read_text() == "survived"
    for entry in visible_entries(tmp_path / "cache"):
        assert cache_mod.problem(entry) is None


def test_a_worker_that_keeps_dying_fails_the_build_naming_the_stage(cluster, tmp_path):
    ex = RayExecutor(cluster[0].address, retries=1)
    try:
        g = BuildGraph(tmp_path / "cache")
        g.add(Stage("doomed", "die_once", die_once, {"marker": str(tmp_path / "m"), "always": True}))
        with pytest.raises(VoxcError, match=r"stage doomed failed: \w*(WorkerCrashed|ActorDied|NodeDied)"):
            g.run(ex)
    finally:
        ex.shutdown()
    assert visible_entries(tmp_path / "cache") == []                 # half.txt never became an entry


def test_a_node_killed_mid_stage_is_retried_on_another_node(cluster, executor, tmp_path):
    """The stage needs `spare`: only the victim node has it; the victim is removed mid-stage and a new
    node with `spare` joins; Ray runs the stage again there."""
    c, _ = cluster
    victim = c.add_node(num_cpus=1, resources={"spare": 1}, object_store_memory=80 * MB)
    c.wait_for_nodes(timeout=60)
    g = BuildGraph(tmp_path / "cache")
    started = tmp_path / "started"
    g.add(Stage("long", "wait", wait_then_write, {"started": str(started), "sleep": 8}, resources={"spare": 1}))
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(g.run(executor)), daemon=True)
    t.start()
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the stage never started"
    c.remove_node(victim, allow_graceful=False)
    rescue = c.add_node(num_cpus=1, resources={"spare": 1}, object_store_memory=80 * MB)
    t.join(timeout=120)
    try:
        assert not t.is_alive(), "the build did not finish after the node was replaced"
        assert executor.ran_on[out["long"].key] == rescue.node_id
        assert (out["long"].path / "out.txt").read_text() == "done"
        assert all(cache_mod.problem(e) is None for e in visible_entries(tmp_path / "cache"))
    finally:
        c.remove_node(rescue)


@pytest.mark.parametrize("kind", ["dir", "object"])
def test_a_second_build_is_all_hits_from_the_shared_store(executor, tmp_path, kind):
    uri = str(tmp_path / "shared") if kind == "dir" else f"file://{tmp_path / 'bucket'}"

    def graph(local: str) -> BuildGraph:
        g = BuildGraph(tmp_path / local)
        a = g.add(Stage("a", "nap", nap, {"text": "a"}))
        g.add(Stage("ab", "nap", nap, {"text": "+"}, {"a": a, "f": HERE / "toy_family.py"}))
        g.use_store(open_store(uri, tmp_path / local))
        return g
    first = graph("one").run(executor)
    assert not any(r.cached for r in first.values())
    second = graph("two").run(executor)                 # another build, another local cache
    assert all(r.cached for r in second.values())
    assert (second["ab"].path / "out.txt").read_text() == "+a"
    if kind == "object":   # every entry is committed by its .json, written after its .tar
        objects = {p.name for p in (tmp_path / "bucket" / "entries").iterdir()}
        assert {n[:-5] for n in objects if n.endswith(".json")} == {n[:-4] for n in objects if n.endswith(".tar")}


def test_an_object_store_entry_without_its_commit_is_invisible(tmp_path):
    store = open_store(f"file://{tmp_path / 'bucket'}", tmp_path / "local")
    (tmp_path / "bucket" / "entries").mkdir(parents=True)
    (tmp_path / "bucket" / "entries" / "k1.tar").write_bytes(b"partial upload")
    assert store.open("k1") is None


def test_bad_addresses_and_stores_are_one_line(capsys, tmp_path):
    from voxc.cli import main
    for args, msg in [(["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
                      (["--address", "auto"], "need --executor ray"),
                      (["--executor", "ray", "--store", "s3://bucket/x"], "no store for the scheme 's3'")]:
        rc = main(["build", "--preset", "tiny", "--target", "onnxruntime", "--models", "vocoder",
                   "--artifacts", str(tmp_path), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and msg in err[0], err


@pytest.mark.slow
def test_ray_builds_run_device_parity_on_the_device_node_and_ship_local_bytes(cluster, tmp_path, capsys):
    """jetson and onnxruntime (vocoder, tiny) on the cluster: target/device runs on the jetson node
    with the ORT stand-in and lands in parity.json; a second build into a fresh folder with the first's
    cache as --store runs nothing; the folders are byte-identical to local builds."""
    from conftest import folder_hashes
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    c, device_node = cluster
    common = dict(preset=preset("tiny"), preset_name="tiny", models=("vocoder",), jobs=2)
    ray_opts = dict(executor="ray", address=c.address, device_runner="onnxruntime")
    for target in ("jetson", "onnxruntime"):
        assert build(BuildRequest(target=target, artifacts=tmp_path / "local", **common))
        assert build(BuildRequest(target=target, artifacts=tmp_path / "ray", **common, **ray_opts))
    log = capsys.readouterr().out
    assert "target/device" in log and "device parity ran on node" in log and "stand-in" in log
    records = [json.loads(p.read_text()) for p in (tmp_path / "ray" / "cache").glob("*/stage.json")]
    device = [r["device"] for r in records if r.get("device")]
    assert len(device) == 1 and device[0]["node"] == device_node               # only on the jetson node
    parity = json.loads((tmp_path / "ray" / "jetson" / "parity.json").read_text())
    runtimes = {r["runtime"] for r in parity["results"]}
    assert {"tensorrt", "onnxruntime-standin"} <= runtimes                    # host rows + stand-in device rows
    assert parity["status"] == "deferred"                                      # a stand-in proves the bundle only
    standin = [r for r in parity["results"] if r["runtime"] == "onnxruntime-standin"]
    assert standin and all(r["passed"] and r["site"] == "device" for r in standin)
    manifest = json.loads((tmp_path / "ray" / "jetson" / "manifest.json").read_text())
    assert manifest["device_parity"][0]["runner"] == "onnxruntime"
    assert folder_hashes(tmp_path / "ray" / "onnxruntime") == folder_hashes(tmp_path / "local" / "onnxruntime")
    local, remote = folder_hashes(tmp_path / "local" / "jetson"), folder_hashes(tmp_path / "ray" / "jetson")
    assert {k: v for k, v in remote.items() if k in local and k not in ("parity.json", "parity.md", "manifest.json")} \
        == {k: v for k, v in local.items() if k not in ("parity.json", "parity.md", "manifest.json")}
    assert set(remote) - set(local) == {"device-parity.json"}
    # a second build elsewhere, the first's cache as the shared store: nothing runs anywhere
    assert build(BuildRequest(target="jetson", artifacts=tmp_path / "again", store=str(tmp_path / "ray" / "cache"),
                              **common, **ray_opts))
    out = capsys.readouterr().out
    assert "0 stages cached" not in out and "9/9 stages cached" in out, out
    assert folder_hashes(tmp_path / "again" / "jetson") == remote
