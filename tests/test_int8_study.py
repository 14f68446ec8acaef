"""INT8 study (compiler/int8_study.py): the Pareto marking, the bench.md section, and a real two-config
study of the tiny vocoder (structure of the table in bench.json / bench.md)."""
from __future__ import annotations

import json
import math
import shutil

import pytest

from voxc import int8_study


def _row(cfg, speed, pesq, runtime="onnxruntime", model="vocoder"):
    return {"model": model, "runtime": runtime, "config": cfg, "speed_ratio": speed, "worst_pesq_wb": pesq}


def test_pareto_marks_exactly_the_undominated_rows():
    rows = [_row("fp32", 1.0, 4.64), _row("a", 1.6, 3.4), _row("b", 1.4, 3.9), _row("c", 1.3, 3.8),   # c < b
            _row("d", 1.6, 3.2),                                  # same speed as a, worse PESQ
            _row("e", 1.6, 3.4),                                  # a tie with a: neither dominates
            _row("x", 2.0, 1.0, runtime="openvino"),              # another runtime: its own front
            _row("nan", 3.0, math.nan), _row("none", None, 4.0)]
    marks = {(r["runtime"], r["config"]): r["pareto"] for r in int8_study.pareto(rows)}
    assert marks == {("onnxruntime", "fp32"): True, ("onnxruntime", "a"): True, ("onnxruntime", "b"): True,
                     ("onnxruntime", "c"): False, ("onnxruntime", "d"): False, ("onnxruntime", "e"): True,
                     ("openvino", "x"): True, ("onnxruntime", "nan"): False, ("onnxruntime", "none"): False}


def test_verdicts_budget_margin_and_goal():
    budget = {"pesq_wb": 3.8, "stoi": 0.98, "level_db": 0.3}
    v = int8_study.verdicts({"worst_pesq_wb": 4.1, "worst_stoi": 0.99, "worst_level_db": 0.1, "speed_low": 1.6}, budget)
    assert v == {"passes_budget": True, "faster": True, "would_ship": True, "goal": True}
    v = int8_study.verdicts({"worst_pesq_wb": 3.9, "worst_stoi": 0.99, "worst_level_db": 0.1, "speed_low": 1.6}, budget)
    assert v["passes_budget"] and v["would_ship"] and not v["goal"]          # PESQ under the goal's 4.0
    v = int8_study.verdicts({"worst_pesq_wb": 4.3, "worst_stoi": 0.99, "worst_level_db": 0.1, "speed_low": 1.05}, budget)
    assert v["passes_budget"] and not v["faster"] and not v["goal"]         # not 1.10x in every round
    v = int8_study.verdicts({"worst_pesq_wb": 4.3, "worst_stoi": 0.97, "worst_level_db": 0.1, "speed_low": 2.0}, budget)
    assert not v["passes_budget"] and not v["goal"]


def test_section_replaced_not_duplicated():
    text = "# Benchmark\n\n## Per graph\n\n| a |\n\n## Serving, mixed texts\n\nserve table\n"
    once = int8_study.replace_section(text, "## INT8 study\n\nfirst\n")
    twice = int8_study.replace_section(once, "## INT8 study\n\nsecond\n")
    assert twice.count("## INT8 study") == 1 and "second" in twice and "first" not in twice
    assert "## Per graph\n\n| a |" in twice and twice.rstrip().endswith("serve table")
    assert twice.index("## INT8 study") < twice.index("## Serving")   # voxc loadtest rewrites from Serving on


def test_tiny_vocoder_study(tiny_build, tmp_path):
    target = tmp_path / "cpu"
    shutil.copytree(tiny_build / "cpu", target)
    before = (target / "bench.md").read_text() if (target / "bench.md").is_file() else None
    doc = int8_study.run_study(tmp_path, "cpu", models=("vocoder",), runtimes=("onnxruntime",),
                               names={"pc-u8rr-k0", "pt-u8rr-k4"}, runs=5, items=3, log=lambda *_: None)
    m = doc["models"]["vocoder"]
    rows = m["rows"]
    assert [r["config"] for r in rows] == ["fp32", "pc-u8rr-k0", "pt-u8rr-k4"]
    assert m["ranking"] and m["ranking"]["trials"]                     # k=4 needed the sensitivity ranking
    for r in rows:
        assert "error" not in r, r
        for k in ("speed_ratio", "speed_low", "speed_high", "median_ms", "worst_pesq_wb", "worst_stoi",
                  "worst_level_db", "pareto", "passes_budget", "faster", "would_ship", "goal"):
            assert k in r, (r["config"], k)
        assert r["speed_low"] <= r["speed_ratio"] <= r["speed_high"] and r["speed_ratio"] > 0
        assert r["pesq_items"] >= 1 and 1.0 <= r["worst_pesq_wb"] <= 4.65 and 0 <= r["worst_stoi"] <= 1.0
    fp32 = rows[0]
    assert fp32["speed_ratio"] == 1.0 and fp32["worst_pesq_wb"] > 4.4     # fp32 artifact vs PyTorch: identical audio
    assert rows[2]["fp32_nodes"] > rows[1]["fp32_nodes"]                   # k=4 kept four more layers float
    # the marking agrees with brute-force dominance, and fp32 (best PESQ) is always on the front
    for r in rows:
        dominated = any(q is not r and q["speed_ratio"] >= r["speed_ratio"] and q["worst_pesq_wb"] >= r["worst_pesq_wb"]
                        and (q["speed_ratio"] > r["speed_ratio"] or q["worst_pesq_wb"] > r["worst_pesq_wb"]) for q in rows)
        assert r["pareto"] is (not dominated)
    assert fp32["pareto"]
    # written into bench.json (key int8_study) and one bench.md section; a rerun reuses the built files
    saved = json.loads((target / "bench.json").read_text())["int8_study"]
    assert [r["config"] for r in saved["models"]["vocoder"]["rows"]] == [r["config"] for r in rows]
    md = (target / "bench.md").read_text()
    assert md.count(int8_study.SECTION) == 1 and "| onnxruntime | pc-u8rr-k0 |" in md
    if before:
        assert md.startswith(before.rstrip("\n"))
    again = int8_study.run_study(tmp_path, "cpu", models=("vocoder",), runtimes=("onnxruntime",),
                                 names={"pc-u8rr-k0"}, runs=3, items=2, log=lambda *_: None)
    assert again["models"]["vocoder"]["rows"][1]["reused"]
    assert (target / "bench.md").read_text().count(int8_study.SECTION) == 1


def test_openvino_keep_fp32_leaves_a_biased_conv_float(tmp_path):
    """OpenVINO names a biased Conv '<node>/WithoutBiases' (+ an Add '<node>'): keep_fp32 must reach it."""
    pytest.importorskip("nncf")
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from voxc.targets import backend
    from voxc.targets.openvino_runner import core
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("a.weight", (8, 8, 3)), ("a.bias", (8,)), ("b.weight", (8, 8, 3)), ("b.bias", (8,)))]
    nodes = [helper.make_node("Conv", ["x", "a.weight", "a.bias"], ["h"], name="conv_a", pads=[1, 1]),
             helper.make_node("Conv", ["h", "b.weight", "b.bias"], ["y"], name="conv_b", pads=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32])], inits)
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    data = [{"x": rng.standard_normal((1, 8, 32)).astype(np.float32)} for _ in range(4)]
    be = backend("openvino")
    record = be.quantize(src, tmp_path, None, data, {"keep_fp32": ["a."]})
    assert record["fp32_nodes"] == ["conv_a"]
    q = core().read_model(str(tmp_path / be.file))
    fq_into = {t.get_node().get_friendly_name() for op in q.get_ops() if op.get_type_name() == "FakeQuantize"
               for out in op.outputs() for t in out.get_target_inputs()}
    assert "conv_b/WithoutBiases" in fq_into          # the other conv is quantised ...
    assert "conv_a/WithoutBiases" not in fq_into      # ... the kept one is not
