"""The perceptual gates bite: each of PESQ-WB, STOI, DNSMOS OVRL drop and level change rejects a damage it
should, passes intact audio and an inaudible one-sample shift; the whole chain decides the build."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from voxc.calibration.sets import load_set
from voxc.core import gates, perceptual
from voxc.models.spec import BUDGETS


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Two seconds of held-out recorded speech, [1, 1, samples] at 16 kHz."""
    u = load_set("parity")[3]
    return (u.wave[:32000] * 0.5 / np.abs(u.wave).max()).astype(np.float32)[None, None]


def _failed(ref, out, precision):
    rows = gates.judge([("waveform", "waveform")], {"waveform": list(ref.shape)}, {"waveform": ref},
                       {"waveform": out.astype(np.float32)}, {"waveform": BUDGETS[precision]["waveform"]})
    return {r["metric"] for r in rows if not r["passed"]}, rows


def _noise(x, snr_db):
    rms = np.sqrt(np.mean(x ** 2))
    return x + np.random.default_rng(0).normal(0, rms * 10 ** (-snr_db / 20), x.shape)


def _gated(x):      # every fourth 20 ms frame dropped: words lose pieces
    return x * (np.arange(x.shape[-1]) // 320 % 4 != 0)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_intact_and_shifted_audio_pass_every_perceptual_gate(speech, precision):
    failed, rows = _failed(speech, speech, precision)
    assert not failed and {r["metric"] for r in rows} >= {"pesq_wb", "stoi", "dnsmos_ovrl_drop", "level_db"}
    failed, rows = _failed(speech, np.roll(speech, 1, axis=-1), precision)
    assert not failed                                  # nobody hears one sample of delay ...
    snr = next(r for r in rows if r["metric"] == "snr_db")
    assert snr["diagnostic"] and snr["value"] < 20      # ... though the waveform SNR collapses (recorded only)


@pytest.mark.parametrize("damage, precision, gate", [
    (lambda x: _noise(x, 45), "fp16", "pesq_wb"),       # faint hiss: PESQ hears it, SNR 45 dB would not
    (lambda x: _noise(x, 30), "int8", "pesq_wb"),
    (lambda x: _noise(x, 30), "int8", "dnsmos_ovrl_drop"),
    (_gated, "int8", "stoi"),
    (lambda x: 0.7 * x, "int8", "level_db"),            # PESQ and STOI align level: this gate's job
])
def test_each_perceptual_gate_rejects_its_damage(speech, damage, precision, gate):
    failed, _ = _failed(speech, damage(speech), precision)
    assert gate in failed, failed


def test_short_items_skip_and_missing_packages_fail_saying_why(speech, monkeypatch):
    short = speech[..., : int(0.3 * 16000)]
    _, rows = _failed(short, short, "int8")
    assert not {r["metric"] for r in rows} & set(perceptual.METRICS)
    monkeypatch.setattr(perceptual, "missing", lambda metric=None: "pesq not installed (pip install pesq)")
    monkeypatch.setattr(perceptual, "scores", lambda *a, **k: {})
    failed, rows = _failed(speech, speech, "int8")
    assert failed == set(perceptual.METRICS) & set(BUDGETS["int8"]["waveform"])
    assert all("pip install" in r["error"] for r in rows if not r["passed"])


# ---- against a built vocoder (tiny preset) ------------------------------------------------------

@pytest.mark.slow
def test_vocoder_fp32_artifact_passes_and_a_damaged_one_fails_the_perceptual_gates(tiny_build, tiny_cfg, tmp_path):
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import load_file
    from voxc.calibration.feeds import FeedMaker, sweep_feeds
    from voxc.compiler import parity
    from voxc.models.family import init_module, model_spec
    from voxc.targets.ort_runner import OrtRunner as runner
    spec = model_spec("vocoder", tiny_cfg)
    ref = init_module("vocoder", tiny_cfg)
    ref.load_state_dict(load_file(str(tiny_build / "cpu" / "vocoder" / "reference.safetensors")))
    maker = FeedMaker("vocoder", spec, tiny_cfg, {})
    feeds = lambda b, n: sweep_feeds(maker, b, n)
    onnx_path = tiny_build / "cpu" / "vocoder" / "vocoder.onnx"
    points = [(1, 96), (1, 384)]
    rows = parity.check(spec, ref, runner(onnx_path), "int8", "onnxruntime", points, feeds=feeds)
    judged = [r for r in rows if r["metric"] in perceptual.METRICS]
    assert judged and all(r["passed"] for r in rows)
    model = onnx.load(str(onnx_path))
    for t in [t for t in model.graph.initializer if len(t.dims) >= 2]:   # every weight noised by 10 %
        w = numpy_helper.to_array(t)
        w = w + np.random.default_rng(0).normal(0, 0.1 * np.sqrt(np.mean(w ** 2)), w.shape)
        t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), t.name))
    onnx.save(model, str(tmp_path / "noised.onnx"))
    rows = parity.check(spec, ref, runner(tmp_path / "noised.onnx"), "int8", "onnxruntime", points, feeds=feeds)
    assert {r["metric"] for r in rows if not r["passed"]} & {"pesq_wb", "stoi"}


# ---- the chain decides ----------------------------------------------------------------------------

def _chain_fixture(tiny_cfg):
    from types import SimpleNamespace
    from voxc.compiler.plan import GraphPlan
    from voxc.models.family import model_config
    layout = {n: GraphPlan(name=n, config=model_config(n, tiny_cfg), weights=f"{n}/weights", export=f"{n}/export",
                           check=f"{n}/check", simplify=f"{n}/simplify",
                           select={"onnxruntime": f"{n}/onnxruntime/select"})
              for n in ("acoustic_decoder", "emotion_encoder", "vocoder")}
    results = {f"{n}/onnxruntime/select": SimpleNamespace(record={
        "accepted": "int8", "fallback": "fp32", "ladder": ["int8", "fp16", "fp32"], "rejected": []}) for n in layout}
    return layout, results


GOOD = {"pesq_wb": 4.2, "stoi": 0.995, "dnsmos_ovrl_drop": 0.02, "level_db": 0.05, "snr_db": 6.0, "mcd_db": 2.0,
        "exact_match": 0.98, "frame_drift": 0.004}


def test_whole_chain_over_its_budget_demotes_the_stage_that_moved_it_most(tiny_cfg):
    from voxc.compiler.chain import demotions
    layout, results = _chain_fixture(tiny_cfg)
    records = {k: v.record for k, v in results.items()}
    budget = {"pesq_wb": 3.8, "stoi": 0.98, "dnsmos_ovrl_drop": 0.2, "level_db": 0.3}
    chain = {"runtimes": {"onnxruntime": {"passed": False, "budget": budget, "budget_precision": "int8", "rows": [
        {"config": "all artifacts", **GOOD, "pesq_wb": 3.5},                 # the sum of small moves is too much
        {"config": "only acoustic_decoder", **GOOD, "pesq_wb": 3.9},
        {"config": "only emotion_encoder", **GOOD},
        {"config": "only vocoder", **GOOD, "pesq_wb": 4.0}]}}}
    demoted = demotions(chain, layout, records, tiny_cfg)
    assert [(d["model"], d["to"]) for d in demoted] == [("acoustic_decoder", "fp32")]
    assert demoted[0]["reason"] == ("int8 rejected: whole chain pesq_wb 3.5 < 3.8 budget (int8); "
                                    "acoustic_decoder moved it most alone")
    chosen = {n: {"onnxruntime": "fp32" if n == "acoustic_decoder" else "int8"} for n in layout}
    assert [d["model"] for d in demotions(chain, layout, records, tiny_cfg, chosen)] == ["vocoder"]
    everything_fp32 = {n: {"onnxruntime": "fp32"} for n in layout}
    assert demotions(chain, layout, records, tiny_cfg, everything_fp32) == []   # nothing left: the build fails
    chain["runtimes"]["onnxruntime"]["rows"][1]["stoi"] = 0.9                   # a stage over its own budget alone
    assert demotions(chain, layout, records, tiny_cfg)[0]["reason"] == \
        "int8 rejected: chain stoi 0.9 < 0.98 budget with only acoustic_decoder swapped in"


def test_a_failing_whole_chain_fails_the_report(tmp_path):
    from voxc.compiler import report
    from voxc.compiler.report import merged_chains
    row = {"model": "vocoder", "precision": "fp32", "runtime": "onnxruntime", "length": 8, "batch": 1,
           "output": "waveform", "metric": "snr_db", "value": 90.0, "tolerance": 60.0, "passed": True}
    c = {"utterances": ["u1"], "note": "", "budget": {"pesq_wb": 4.5}, "budget_precision": "fp32",
         "rows": [{"config": "all artifacts", "pesq_wb": 4.1, "within_budget": False, "over_budget": ["pesq_wb"]}]}
    chain = merged_chains([{"chain": {"runtimes": {"onnxruntime": {**c, "passed": False}}}, "demotions": []}])["chain"]
    assert chain["passed"] is False
    doc, markdown, passed = report.parity_doc("cpu", [row], chain)
    assert not passed and doc["status"] == "fail"
    assert "whole chain FAIL" in markdown
    chain["runtimes"]["onnxruntime"]["passed"] = chain["passed"] = True
    assert report.parity_doc("cpu", [row], chain)[2]


@pytest.mark.slow
def test_voxc_parity_reruns_and_reports_the_chain(tiny_build, tmp_path, capsys):
    from voxc.cli import main
    shutil.copytree(tiny_build / "cpu", tmp_path / "cpu")
    assert main(["parity", "--target", "cpu", "--artifacts", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "cpu" / "parity.json").read_text())
    assert doc["chain"]["passed"] is True and set(doc["chain"]["runtimes"]) == {"onnxruntime", "openvino"}
    whole = doc["chain"]["runtimes"]["onnxruntime"]["rows"][0]
    assert whole["config"] == "all artifacts" and {"pesq_wb", "stoi", "dnsmos_ovrl_drop"} <= set(whole)
    assert "Chained parity" in capsys.readouterr().out
