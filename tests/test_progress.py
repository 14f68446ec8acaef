"""A build says what it is doing while it runs: a line per stage as it finishes, with one worker too, a
heartbeat naming the running stage with its elapsed time and an estimate from earlier builds, and nothing of
it under --quiet."""
from __future__ import annotations

import json
import time
from pathlib import Path

from voxc.compiler.graph import BuildGraph, InlineExecutor, Stage
from voxc.compiler.progress import SECONDS_FILE, Progress


def _sleep(out: Path, params: dict, inputs: dict) -> dict:
    time.sleep(params["s"])
    (out / "x.txt").write_text(str(params["s"]))
    return {}


def _graph(cache: Path, seconds: list[float]) -> BuildGraph:
    g = BuildGraph(cache)
    prev = None
    for i, s in enumerate(seconds):
        prev = g.add(Stage(label=f"m/s{i}", name="sleep", fn=_sleep, params={"s": s, "i": i},
                           inputs={"prev": prev} if prev else {}))
    return g


def test_one_worker_prints_each_stage_as_it_finishes_and_a_heartbeat(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("voxc.compiler.graph.HEARTBEAT_POLL_S", 0.05)
    g = _graph(tmp_path, [0.0, 0.6, 0.0])
    seen: list[tuple[float, str]] = []

    class Recording(Progress):
        def __call__(self, result):
            seen.append((time.monotonic(), result.label))
            super().__call__(result)

    progress = Recording(tmp_path, list(g.stages), every=0.2)
    t0 = time.monotonic()
    g.run(InlineExecutor(), progress)
    progress.save()
    out = capsys.readouterr().out
    assert [label for _, label in seen] == ["m/s0", "m/s1", "m/s2"]
    assert seen[0][0] - t0 < 0.4                          # the first stage's line came before the slow one ended
    assert "[  1/3] m/s0" in out and "[  3/3] m/s2" in out
    beat = [line for line in out.splitlines() if line.startswith("voxc: running")]
    assert beat and "m/s1 (" in beat[0] and "1/3 stages done" in beat[0]
    assert "left by earlier builds" not in beat[0]          # the first build has nothing to estimate from
    kept = json.loads((tmp_path / SECONDS_FILE).read_text())
    assert set(kept) == {"m/s0", "m/s1", "m/s2"} and kept["m/s1"] >= 0.6


def test_the_estimate_comes_from_earlier_builds_and_quiet_says_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("voxc.compiler.graph.HEARTBEAT_POLL_S", 0.05)
    (tmp_path / SECONDS_FILE).write_text(json.dumps({"m/s0": 100.0, "m/s1": 200.0, "m/s2": 60.0}))
    g = _graph(tmp_path, [0.5, 0.0, 0.0])
    progress = Progress(tmp_path, list(g.stages), every=0.2)
    assert progress.estimate([("m/s0", 40.0)]) == 60.0 + 200.0 + 60.0
    g.run(InlineExecutor(), progress)
    beat = [line for line in capsys.readouterr().out.splitlines() if line.startswith("voxc: running")]
    assert beat and "left by earlier builds' timings" in beat[0]
    g2 = _graph(tmp_path / "other", [0.5, 0.0])
    g2.run(InlineExecutor(), Progress(tmp_path, list(g2.stages), quiet=True, every=0.1))
    assert capsys.readouterr().out == ""


def test_a_failing_stage_cancels_the_queued_ones_with_one_worker(tmp_path):
    import pytest
    from voxc.core.errors import VoxcError

    def boom(out, params, inputs):
        raise ValueError("no")
    g = BuildGraph(tmp_path)
    a = g.add(Stage(label="a", name="boom", fn=boom))
    g.add(Stage(label="b", name="sleep", fn=_sleep, params={"s": 0.0}))
    g.add(Stage(label="c", name="sleep", fn=_sleep, params={"s": 0.0, "i": 1}, inputs={"a": a}))
    with pytest.raises(VoxcError, match="stage a failed: ValueError: no"):
        g.run(InlineExecutor())
