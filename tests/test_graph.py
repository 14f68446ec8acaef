"""Build graph: content-addressed cache, no work on an unchanged rebuild, atomic writes, executors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxc.compiler.graph import BuildGraph, InlineExecutor, LocalPoolExecutor, Stage
from voxc.core.errors import VoxcError


def write_text(out: Path, params: dict, inputs: dict) -> dict:
    text = params["text"] + "".join((p / "out.txt").read_text() for p in inputs.values() if p.is_dir())
    (out / "out.txt").write_text(text)
    return {"length": len(text)}


def explode(out: Path, params: dict, inputs: dict) -> dict:
    (out / "half.txt").write_text("half-written")
    raise RuntimeError("boom")


def _graph(cache: Path, a_text="a", b_text="b") -> BuildGraph:
    g = BuildGraph(cache)
    a = g.add(Stage("a", "write", write_text, {"text": a_text}))
    b = g.add(Stage("b", "write", write_text, {"text": b_text}))
    g.add(Stage("ab", "write", write_text, {"text": "+"}, {"a": a, "b": b}))
    return g


def test_second_run_is_all_cached_and_change_rebuilds_only_dependents(tmp_path):
    first = _graph(tmp_path).run(InlineExecutor())
    assert not any(r.cached for r in first.values())
    assert (first["ab"].path / "out.txt").read_text() == "+ab"
    again = _graph(tmp_path).run(InlineExecutor())
    assert all(r.cached for r in again.values())
    changed = _graph(tmp_path, b_text="B").run(InlineExecutor())
    assert changed["a"].cached and not changed["b"].cached and not changed["ab"].cached
    assert (changed["ab"].path / "out.txt").read_text() == "+aB"


def test_key_changes_with_stage_code_and_input_files(tmp_path, monkeypatch):
    from voxc.core import sources
    src = tmp_path / "weights.bin"
    src.write_bytes(b"1")

    def key(code=()):
        g = BuildGraph(tmp_path / "cache")
        s = g.add(Stage("s", "write", write_text, {"text": "x"}, {"w": src}, code=code))
        return g.key(s, {})
    k1, k_ort = key(), key(("voxc.targets.onnxruntime",))
    assert k_ort != k1                                        # the code a stage runs is in its key
    real = sources.read_source
    monkeypatch.setattr(sources, "read_source", lambda p: real(p) + (b"# edited" if p.name == "onnxruntime.py" else b""))
    assert key() == k1 and key(("voxc.targets.onnxruntime",)) != k_ort   # editing it changes only its users
    src.write_bytes(b"2")
    assert key() != k1


def test_failed_stage_leaves_nothing_a_later_build_would_trust(tmp_path):
    g = BuildGraph(tmp_path)
    g.add(Stage("bad", "explode", explode))
    with pytest.raises(VoxcError, match="stage bad failed: RuntimeError: boom"):
        g.run(InlineExecutor())
    assert list(tmp_path.iterdir()) == []


def test_interrupted_temporary_folder_is_ignored(tmp_path):
    g = _graph(tmp_path)
    key_a = g.key(g.stages["a"], {})
    stale = tmp_path / f".tmp-{key_a}-deadbeef"
    stale.mkdir(parents=True)
    (stale / "out.txt").write_text("garbage")
    results = g.run(InlineExecutor())
    assert not results["a"].cached and (results["a"].path / "out.txt").read_text() == "a"


def test_records_carry_output_hash(tmp_path):
    results = _graph(tmp_path).run(InlineExecutor())
    record = json.loads((results["a"].path / "stage.json").read_text())
    assert record["output_sha256"] == results["a"].record["output_sha256"] and record["length"] == 1


def test_local_pool_runs_independent_stages_in_workers(tmp_path):
    pool = LocalPoolExecutor(2)
    try:
        results = _graph(tmp_path).run(pool)
    finally:
        pool.shutdown()
    assert (results["ab"].path / "out.txt").read_text() == "+ab"


def test_unwritable_cache_is_one_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(VoxcError, match="cannot write to the artifacts cache .* pass --artifacts DIR"):
        _graph(blocker / "cache").run(InlineExecutor())


def test_a_simplifier_that_changes_the_outputs_is_not_used(tmp_path, monkeypatch, tiny_cfg):
    """onnxsim and onnxslim results are run against the exported graph; a wrong one falls back."""
    import onnx
    from onnx import helper
    from voxc.compiler import stages
    from voxc.compiler.plan import ExportParams, WeightsParams
    from voxc.models.family import model_config
    graph = dict(model="vocoder", config=model_config("vocoder", tiny_cfg))
    params = ExportParams(**graph, exporter="torchscript", opset=17)
    w, e, c = (tmp_path / n for n in ("w", "e", "c"))
    for d in (w, e, c):
        d.mkdir()
    stages.weights(w, WeightsParams(**graph), {})
    stages.export(e, params, {"weights": w})
    stages.check(c, params, {"onnx": e})

    def broken(model):
        out = model.graph.output[0].name
        for n in model.graph.node:                      # scale the output: a wrong "simplification"
            n.output[:] = [f"{o}_pre" if o == out else o for o in n.output]
        model.graph.node.append(helper.make_node("Mul", [f"{out}_pre", "half"], [out]))
        model.graph.initializer.append(onnx.numpy_helper.from_array(__import__("numpy").array(0.5, "float32"), "half"))
        return model
    monkeypatch.setattr(stages, "_try_onnxsim", broken)
    one = tmp_path / "one"
    one.mkdir()
    rec = stages.simplify(one, params, {"onnx": c})
    assert rec["simplifier"] == "onnxslim" and "onnxsim: outputs differ from the exported graph" in rec["fallback_reasons"][0]
    monkeypatch.setattr(stages, "_try_onnxslim", broken)
    both = tmp_path / "both"
    both.mkdir()
    rec = stages.simplify(both, params, {"onnx": c})
    assert rec["simplifier"] == "none" and len(rec["fallback_reasons"]) == 2


def die_first(out: Path, params: dict, inputs: dict) -> dict:
    """Kills its own worker (SIGKILL, as the out-of-memory killer does) the first `deaths` times it runs."""
    import os
    import signal
    count = Path(params["count"])
    runs = int(count.read_text()) if count.exists() else 0
    count.write_text(str(runs + 1))
    if runs < params["deaths"]:
        os.kill(os.getpid(), signal.SIGKILL)
    (out / "out.txt").write_text("survived")
    return {"runs": runs + 1}


def _dying(cache: Path, deaths: int) -> BuildGraph:
    g = BuildGraph(cache)
    a = g.add(Stage("a", "write", write_text, {"text": "a"}))
    g.add(Stage("vocoder/export", "die", die_first, {"count": str(cache.parent / "count"), "deaths": deaths},
                {"a": a}))
    return g


def test_a_worker_killed_mid_stage_is_replaced_and_its_stage_runs_again(tmp_path, capsys):
    ex = LocalPoolExecutor(2)
    try:
        done = _dying(tmp_path / "cache", deaths=1).run(ex)
    finally:
        ex.shutdown()
    assert done["vocoder/export"].record["runs"] == 2 and not done["vocoder/export"].cached
    assert "a worker process died (e.g. out of memory) while running vocoder/export; running it again" \
        in capsys.readouterr().out


def test_a_stage_whose_worker_dies_twice_ends_the_build_in_one_line(tmp_path):
    ex = LocalPoolExecutor(2)
    try:
        with pytest.raises(VoxcError, match=r"a worker process died \(killed, e.g. by the out-of-memory killer\) "
                                            r"while running stage vocoder/export for the second time; .*--jobs 1"):
            _dying(tmp_path / "cache", deaths=2).run(ex)
    finally:
        ex.shutdown()
    assert (tmp_path / "count").read_text() == "2"
