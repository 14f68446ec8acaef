"""The precision ladder: ORT fp16/int8 and OpenVINO builds, audio gates that bite, the policy's
decisions and fallbacks, chained parity and the benchmark (tiny preset, real calibration data)."""
from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from voxc.calibration.feeds import FeedMaker, calibration_feeds, sweep_feeds
from voxc.models.cutting import speech_cut
from voxc.calibration.sets import load_set, set_hash
from voxc.core import metrics
from voxc.compiler import parity, policy
from voxc.compiler.chain import chain_parity
from voxc.models.pipeline import Pipeline
from voxc.cli import main
from voxc.core.errors import VoxcError
from voxc.models.family import family, init_module, model_spec
from voxc.targets import backend
from voxc.targets import onnxruntime as ortb
from voxc.targets.openvino_runner import OvRunner
from voxc.targets.ort_runner import OrtRunner
from voxc.targets.runner import TorchRunner

pytestmark = pytest.mark.slow


def _ref(tiny_build, name, cfg):
    from safetensors.torch import load_file
    m = init_module(name, cfg)
    m.load_state_dict(load_file(str(tiny_build / "cpu" / name / "reference.safetensors")))
    return m.eval()


def _maker(tiny_build, name, cfg):
    from voxc.calibration.feeds import upstream_graphs
    up = {u: TorchRunner(_ref(tiny_build, u, cfg), model_spec(u, cfg)) for u in upstream_graphs(name, cfg)}
    return FeedMaker(name, model_spec(name, cfg), cfg, up)


@pytest.fixture(scope="module")
def vocoder_builds(tiny_build, tiny_cfg, tmp_path_factory):
    """fp16 and int8 vocoders from both runtimes, calibrated on the committed calibration set."""
    src = tiny_build / "cpu" / "vocoder" / "vocoder.onnx"
    spec = model_spec("vocoder", tiny_cfg)
    cal = calibration_feeds(_maker(tiny_build, "vocoder", tiny_cfg), 8, max_length=spec.dims["frames"].opt)
    out = {}
    for be in (backend("onnxruntime"), backend("openvino")):
        for p in ("fp16", "int8"):
            d = tmp_path_factory.mktemp(f"{be.name}-{p}")
            opts = {"keep_fp32": ["conv_pre."]} if be.name == "onnxruntime" else {}
            out[(be.name, p)] = (d, be.build(src, d, p, spec, cal, opts, None))
    return out


# ---- real data ------------------------------------------------------------------------------

def test_feeds_are_real_held_out_data_at_every_sweep_length(tiny_build, tiny_cfg):
    spec = model_spec("vocoder", tiny_cfg)
    maker = _maker(tiny_build, "vocoder", tiny_cfg)
    held_out = load_set("parity")
    for b, n in spec.sweep():
        f = sweep_feeds(maker, b, n)
        assert f["mel"].shape == (b, 80, n)
        for item in f["mel"]:   # every item is the loudest window of a held-out utterance (tiled when longer)
            assert any(np.array_equal(item, speech_cut(u.mel, n)) for u in held_out)
        if n < 32:              # a short point is speech, not the leading silence of a Festival utterance
            assert np.exp(f["mel"][0]).sum(0).mean() > 0.1 * max(np.exp(u.mel).sum(0).max() for u in held_out[:20])
    dec = _maker(tiny_build, "acoustic_decoder", tiny_cfg)
    for b, n in model_spec("acoustic_decoder", tiny_cfg).sweep():
        assert dec.batch([u for u in load_set("parity") if u.aligned][:b], n)["frame_states"].shape == (b, n, 32)


# ---- backends ---------------------------------------------------------------------------------

def test_ort_fp16_keeps_float32_io_and_int8_is_per_channel_qdq(vocoder_builds, tiny_cfg):
    d16, r16 = vocoder_builds[("onnxruntime", "fp16")]
    m16 = onnx.load(str(d16 / r16["file"]))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in list(m16.graph.input) + list(m16.graph.output))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m16.graph.initializer)
    d8, r8 = vocoder_builds[("onnxruntime", "int8")]
    m8 = onnx.load(str(d8 / r8["file"]))
    ops = [n.op_type for n in m8.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {t.name: t for t in m8.graph.initializer}
    scales = [inits[n.input[1]] for n in m8.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
              and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert scales and any(np.prod(s.dims) > 1 for s in scales)           # per-channel weight scales
    assert r8["fp32_nodes"] and r8["int8"]["activation_type"] == "uint8" and r8["calibration_items"] == 8
    conv_pre = [n for n in m8.graph.node if n.name in r8["fp32_nodes"]][0]
    assert "conv_pre.weight" in conv_pre.input                         # the kept layer reads float weights


def test_openvino_ir_fp16_halves_weights_and_int8_runs(vocoder_builds, tiny_build, tiny_cfg, tmp_path):
    spec = model_spec("vocoder", tiny_cfg)
    d32 = tiny_build / "cpu" / "vocoder"
    d16, r16 = vocoder_builds[("openvino", "fp16")]
    d8, r8 = vocoder_builds[("openvino", "int8")]
    assert r8["int8"]["preset"] == "mixed" and (d8 / "model.bin").is_file()
    f = sweep_feeds(_maker(tiny_build, "vocoder", tiny_cfg), 1, 40)
    want = TorchRunner(_ref(tiny_build, "vocoder", tiny_cfg), spec).infer(f)["waveform"]
    for d, r in ((d16, r16), (d8, r8)):
        got = OvRunner(d / r["file"]).infer(f)["waveform"]
        assert got.shape == want.shape and metrics.snr_db(want, got) > 15
    assert backend("openvino").build(d32 / "vocoder.onnx", tmp_path, "fp32", spec)["format"] == "openvino-ir"
    assert (d16 / "model.bin").stat().st_size < 0.6 * (tmp_path / "model.bin").stat().st_size


def test_int8_refuses_to_calibrate_on_nothing(tiny_build, tiny_cfg, tmp_path):
    src = tiny_build / "cpu" / "vocoder" / "vocoder.onnx"
    for be in (backend("onnxruntime"), backend("openvino")):
        with pytest.raises(VoxcError, match="real calibration data"):
            be.build(src, tmp_path, "int8", model_spec("vocoder", tiny_cfg), None, {}, None)
    with pytest.raises(VoxcError, match="calibrate_method 'kmeans' unknown"):
        ortb.int8_settings({"calibrate_method": "kmeans"})


@pytest.mark.parametrize("options, act_dtype", [
    ({"calibrate_method": "entropy"}, onnx.TensorProto.UINT8),
    ({"calibrate_method": "percentile"}, onnx.TensorProto.UINT8),
    ({"activation_type": "uint16", "weight_type": "int8"}, onnx.TensorProto.UINT16),
])
def test_ort_int8_calibration_methods_and_16bit_activations_build_and_run(tiny_build, tiny_cfg, tmp_path,
                                                                          options, act_dtype):
    """Histogram calibrations on varying-length real inputs (ORT's strided workaround) and A16W8."""
    spec = model_spec("vocoder", tiny_cfg)
    maker = _maker(tiny_build, "vocoder", tiny_cfg)
    cal = calibration_feeds(maker, 4, max_length=spec.dims["frames"].opt)
    rec = backend("onnxruntime").build(tiny_build / "cpu" / "vocoder" / "vocoder.onnx", tmp_path, "int8", spec, cal,
                     {**options, "sensitivity_layers": 0})
    assert all(rec["int8"][k] == v for k, v in options.items())
    model = onnx.load(str(tmp_path / rec["file"]))
    q_types = {i.data_type for i in model.graph.initializer
               if any(n.op_type == "QuantizeLinear" and i.name in n.input[2:] for n in model.graph.node)}
    assert act_dtype in q_types                                 # activations carry the asked-for type
    f = sweep_feeds(maker, 1, 40)
    want = TorchRunner(_ref(tiny_build, "vocoder", tiny_cfg), spec).infer(f)["waveform"]
    got = OrtRunner(tmp_path / rec["file"]).infer(f)["waveform"]
    assert got.shape == want.shape and metrics.snr_db(want, got) > 10


# ---- audio gates bite ---------------------------------------------------------------------------

def _failed(rows):
    return {r["metric"] for r in rows if not r["passed"]}


class Damaged:
    """Wraps a runner and damages one output the way a bad artifact would."""
    name = "damaged"

    def __init__(self, inner, fn):
        self.inner, self.fn = inner, fn

    def infer(self, feeds):
        out = self.inner.infer(feeds)
        return {k: self.fn(k, v) for k, v in out.items()}


def _lowpass(k, w):   # muffled: a 4-tap moving average kills the top octave, SNR stays moderate
    kernel = np.ones(4) / 4
    return np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="same"), -1, w).astype(np.float32)


@pytest.mark.parametrize("damage, expect", [
    (lambda k, w: (w + np.random.default_rng(0).normal(0, 0.1 * np.sqrt(np.mean(w ** 2)), w.shape)).astype(np.float32),
     {"snr_db", "snr_voiced_db"}),
    (_lowpass, {"mrstft", "logmel_l1", "mcd_db"}),
])
def test_waveform_audio_gates_reject_a_damaged_vocoder(tiny_build, tiny_cfg, damage, expect):
    spec = model_spec("vocoder", tiny_cfg)
    maker = _maker(tiny_build, "vocoder", tiny_cfg)
    rows = parity.check(spec, _ref(tiny_build, "vocoder", tiny_cfg),
                        Damaged(OrtRunner(tiny_build / "cpu" / "vocoder" / "vocoder.onnx"), damage), "fp32",
                        "onnxruntime", [(1, 96)], feeds=lambda b, n: sweep_feeds(maker, b, n))
    assert expect <= _failed(rows), _failed(rows)


def test_mel_gates_reject_a_damaged_decoder(tiny_build, tiny_cfg):
    spec = model_spec("acoustic_decoder", tiny_cfg)
    maker = _maker(tiny_build, "acoustic_decoder", tiny_cfg)
    shift = lambda k, m: (m + np.linspace(0, 0.6, m.shape[1])[None, :, None]).astype(np.float32)  # tilted spectrum
    rows = parity.check(spec, _ref(tiny_build, "acoustic_decoder", tiny_cfg),
                        Damaged(OrtRunner(tiny_build / "cpu" / "acoustic_decoder" / "acoustic_decoder.onnx"), shift),
                        "int8", "onnxruntime", [(1, 96)], feeds=lambda b, n: sweep_feeds(maker, b, n))
    assert {"logmel_l1", "mcd_db"} <= _failed(rows)


def test_embedding_cosine_gate_rejects_a_damaged_speaker_encoder(tiny_build, tiny_cfg):
    spec = model_spec("speaker_encoder", tiny_cfg)
    maker = _maker(tiny_build, "speaker_encoder", tiny_cfg)
    rot = lambda k, e: np.roll(e, 1, axis=-1) * 0.2 + e * 0.98          # a slightly different speaker
    rows = parity.check(spec, _ref(tiny_build, "speaker_encoder", tiny_cfg),
                        Damaged(OrtRunner(tiny_build / "cpu" / "speaker_encoder" / "speaker_encoder.onnx"), rot),
                        "int8", "onnxruntime", [(1, 96)], feeds=lambda b, n: sweep_feeds(maker, b, n))
    assert "cosine" in _failed(rows)


def test_durations_gates_reject_a_damaged_acoustic_encoder(tiny_build, tiny_cfg):
    spec = model_spec("acoustic_encoder", tiny_cfg)
    maker = _maker(tiny_build, "acoustic_encoder", tiny_cfg)
    slow = lambda k, d: d * 2 if k == "durations" else d
    rows = parity.check(spec, _ref(tiny_build, "acoustic_encoder", tiny_cfg),
                        Damaged(OrtRunner(tiny_build / "cpu" / "acoustic_encoder" / "acoustic_encoder.onnx"), slow),
                        "int8", "onnxruntime", [(1, 24)], feeds=lambda b, n: sweep_feeds(maker, b, n))
    assert {"exact_match", "frame_drift"} <= _failed(rows)


# ---- policy -------------------------------------------------------------------------------------

def _rounds(*ms):
    return {"median_ms": sorted(ms)[len(ms) // 2], "round_ms": list(ms)}


def test_policy_accepts_only_faster_passing_precisions():
    ladder = ["int8", "fp16", "fp32"]
    t = {"int8": _rounds(6, 6, 6, 6, 6), "fp16": _rounds(19, 19, 19, 19, 19), "fp32": _rounds(10, 10, 10, 10, 10)}
    d = policy.decide(ladder, {"int8": None, "fp16": None, "fp32": None}, t)
    assert d["accepted"] == "int8"
    assert d["rejected"] == [{"precision": "fp16", "reason": "fp16 rejected: not 1.10x faster than fp32 in every timing round"}]
    assert d["speedups"]["int8"]["ratio"] == pytest.approx(10 / 6) and d["speedups"]["int8"]["versus"] == "fp32"
    d = policy.decide(ladder, {"int8": "waveform mcd_db 1.4 > 1 budget at 1x96", "fp16": None, "fp32": None}, t)
    assert d["accepted"] == "fp32" and d["rejected"][0]["reason"] == "int8 rejected: waveform mcd_db 1.4 > 1 budget at 1x96"
    t["int8"] = _rounds(9.5, 9.5, 9.5, 9.5, 9.5)                        # faster, but not by the margin
    d = policy.decide(ladder, {"int8": None, "fp16": None, "fp32": None}, t)
    assert d["accepted"] == "fp32"
    assert d["rejected"][0]["reason"] == "int8 rejected: not 1.10x faster than fp32 in every timing round"
    assert policy.decide(ladder, {"int8": None, "fp16": None, "fp32": None}, t, margin=0.0)["accepted"] == "int8"


def test_policy_never_accepts_a_speedup_within_the_noise():
    """A rung that won big once (a load spike on the other rung) but not in every paired round: its
    median ratio clears the margin, its lower bound does not, so it is rejected."""
    ladder = ["fp16", "fp32"]
    noisy = {"fp16": _rounds(10, 6, 10, 6, 6), "fp32": _rounds(10, 10, 10, 10, 10)}
    d = policy.decide(ladder, {"fp16": None, "fp32": None}, noisy)
    assert d["speedups"]["fp16"]["ratio"] == pytest.approx(10 / 6) and d["speedups"]["fp16"]["low"] == pytest.approx(1.0)
    assert d["accepted"] == "fp32" and "every timing round" in d["rejected"][0]["reason"]
    steady = {"fp16": _rounds(8.1, 8.0, 8.3, 7.9, 8.2), "fp32": _rounds(10, 10.2, 10.1, 9.9, 10)}
    assert policy.decide(ladder, {"fp16": None, "fp32": None}, steady)["accepted"] == "fp16"


def test_timing_rounds_are_paired_and_recorded():
    class Sleeper:
        def __init__(self, s):
            self.s = s

        def infer(self, feeds):
            time.sleep(self.s)
    t = policy.time_interleaved({"slow": Sleeper(0.02), "fast": Sleeper(0.002)}, {}, runs=10, warmup=1, rounds=5)
    assert all(len(v["round_ms"]) == 5 and v["runs"] == 10 for v in t.values())
    s = policy.speedup(t["slow"], t["fast"])
    assert s["rounds"] == 5 and s["low"] <= s["ratio"] <= s["high"] and s["low"] > 1.5


def test_manifest_records_decisions_and_rejected_gates_do_not_fail_the_build(tiny_build):
    folder = tiny_build / "cpu"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["data_sets"] == {"calibration": set_hash("calibration"), "parity": set_hash("parity")}
    voc = m["models"]["vocoder"]["precision"]
    assert set(voc) == {"onnxruntime", "openvino"}
    reasons = [r["reason"] for v in m["models"].values() for p in v["precision"].values() for r in p["rejected"]]
    assert reasons and all(" rejected: " in r for r in reasons)
    gate_failures = [r for r in json.loads((folder / "parity.json").read_text())["results"] if not r["passed"]]
    assert json.loads((folder / "parity.json").read_text())["passed"] and all(not r["gating"] for r in gate_failures)
    for rt, p in voc.items():
        assert p["ladder"] == ["int8", "fp16", "fp32"] and p["accepted"] in p["ladder"]
        assert "median_ms" not in p["figures"]["fp32"] and p["figures"]["int8"]["calibration_set"] == set_hash("calibration")
        measured = json.loads((tiny_build / "cpu.timings.json").read_text())["models"]["vocoder"][rt]
        assert measured["accepted"] == p["accepted"] and measured["timings"]["fp32"]["median_ms"] > 0
        assert len(measured["timings"]["fp32"]["round_ms"]) == policy.ROUNDS
        files = [a for a in m["models"]["vocoder"]["artifacts"] if a["runtime"] == rt]
        assert files and all(a["precision"] == p["accepted"] and a["parity_set"] == set_hash("parity") for a in files)
        if p["accepted"] == "int8":
            assert all(a["calibration_set"] == set_hash("calibration") for a in files)


def test_a_failing_fallback_fails_the_build(tiny_build, tiny_cfg, monkeypatch, capsys):
    from voxc.compiler.build import BuildRequest, build
    from voxc.models import spec as spec_mod
    strict = {**spec_mod.BUDGETS["fp32"], "waveform": {**spec_mod.BUDGETS["fp32"]["waveform"], "snr_db": 500.0}}
    monkeypatch.setitem(spec_mod.BUDGETS, "fp32", strict)
    req = BuildRequest(target="onnxruntime", preset=tiny_cfg, artifacts=tiny_build, jobs=1, models=("vocoder",),
                       precisions={"vocoder": ("fp32",)})
    assert not build(req)
    assert "snr_db" in (tiny_build / "onnxruntime" / "parity.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--precisions", "vocoder"], "--precisions expects MODEL=PRECISION"),
    (["--precisions", "vocoder=int4,fp32"], "unknown precision 'int4' for vocoder"),
    (["--precisions", "vocodr=fp32"], "unknown model 'vocodr'"),
])
def test_bad_precisions_argument(tmp_path, capsys, args, message):
    assert main(["build", "--preset", "tiny", "--artifacts", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("voxc: error: ") and message in err[0]
    assert not (tmp_path / "cpu").exists()


# ---- chain and bench ------------------------------------------------------------------------------

def test_chained_parity_attributes_drift_to_the_damaged_stage(tiny_build, tiny_cfg):
    names = ("speaker_encoder", "emotion_encoder", "acoustic_encoder", "length_regulator", "acoustic_decoder",
             "vocoder")
    ref = {n: TorchRunner(_ref(tiny_build, n, tiny_cfg), model_spec(n, tiny_cfg)) for n in names}
    arts = {n: OrtRunner(tiny_build / "cpu" / n / f"{n}.onnx") for n in names}
    arts["acoustic_decoder"] = Damaged(arts["acoustic_decoder"], lambda k, m: (m + 0.5).astype(np.float32))
    doc = chain_parity(ref, arts, tiny_cfg, model_spec("vocoder", tiny_cfg).budget("fp32", "waveform"), count=1)
    rows = {r["config"]: r for r in doc["rows"]}
    assert not rows["all artifacts"]["within_budget"] and not rows["only acoustic_decoder"]["within_budget"]
    assert all(rows[f"only {n}"]["within_budget"] for n in names if n != "acoustic_decoder")
    chain = Pipeline(family("voxc"), tiny_cfg, arts).run(
        {"text": "Hello there.", "reference_mel": load_set("refs")[0].mel}, ["waveform", "frames"]).values
    assert chain["waveform"].shape[-1] == 256 * chain["frames"]
    assert json.loads((tiny_build / "cpu" / "parity.json").read_text())["chain"]["runtimes"]["openvino"]["rows"]


def test_bench_quick_writes_ratios_next_to_torch(tiny_build):
    main(["bench", "--target", "cpu", "--artifacts", str(tiny_build), "--quick"])
    doc = json.loads((tiny_build / "cpu" / "bench.json").read_text())
    assert {"machine", "threads", "results", "chain"} <= set(doc) and doc["machine"]["fp32_peak_gflops"] > 0
    keys = {"model", "runtime", "precision", "shape", "median_ms", "p90_ms", "rtf", "vs_torch_eager"}
    assert all(keys <= set(r) for r in doc["results"])
    voc = [r for r in doc["results"] if r["model"] == "vocoder"]
    assert {r["runtime"] for r in voc} == {"torch", "onnxruntime", "openvino"} and all(r["rtf"] > 0 for r in voc)
    assert all(0 < r["peak_fraction"] for r in voc)
    c = doc["chain"]
    assert c["audio_seconds"] > 0 and c["ratio"] > 0 and set(c["accepted"]) == {
        "speaker_encoder", "emotion_encoder", "acoustic_encoder", "length_regulator", "acoustic_decoder", "vocoder"}
    assert "## Chain" in (tiny_build / "cpu" / "bench.md").read_text()


def test_chain_gate_demotes_a_stage_whose_swap_moves_the_audio_past_its_budget(tiny_cfg):
    """An int8 decoder that passes its own mel gates but, swapped alone into the chain, moves the audio
    past the int8 perceptual budget falls back; waveform SNR (phase) demotes nothing, not even the vocoder."""
    from types import SimpleNamespace
    from voxc.compiler.chain import demotions
    from voxc.compiler.report import apply_selection

    def chain_demotions(chain, chains, results):
        return demotions(chain, chains, {k: v.record for k, v in results.items()}, tiny_cfg)

    def apply_demotions(demoted, chains, results):
        apply_selection(chains, results, {"demotions": demoted})
    from voxc.compiler.plan import GraphPlan
    from voxc.models.family import model_config
    chains = {n: GraphPlan(name=n, config=model_config(n, tiny_cfg), weights=f"{n}/weights", export=f"{n}/export",
                           check=f"{n}/check", simplify=f"{n}/simplify",
                           select={"onnxruntime": f"{n}/onnxruntime/select"})
              for n in ("acoustic_decoder", "emotion_encoder", "vocoder")}
    results = {f"{n}/onnxruntime/select": SimpleNamespace(record={
        "accepted": "int8", "fallback": "fp32", "ladder": ["int8", "fp16", "fp32"], "rejected": []}) for n in chains}
    quiet = {"pesq_wb": 4.3, "stoi": 0.995, "dnsmos_ovrl_drop": 0.0, "level_db": 0.05, "snr_db": 6.0,
             "snr_voiced_db": 6.0, "mrstft": 0.05, "logmel_l1": 0.01, "mcd_db": 0.3, "exact_match": 0.98,
             "frame_drift": 0.004}
    chain = {"runtimes": {"onnxruntime": {"rows": [
        {"config": "all artifacts", **quiet, "pesq_wb": 3.0},
        {"config": "only acoustic_decoder", **quiet, "pesq_wb": 3.5},        # under the 3.8 int8 budget
        {"config": "only emotion_encoder", **quiet},                          # low SNR only: stays
        {"config": "only vocoder", **quiet, "snr_db": 3.0, "mcd_db": 2.0}]}}}  # so does the vocoder
    demoted = chain_demotions(chain, chains, results)
    assert [(d["model"], d["to"]) for d in demoted] == [("acoustic_decoder", "fp32")]
    assert demoted[0]["reason"] == "int8 rejected: chain pesq_wb 3.5 < 3.8 budget with only acoustic_decoder swapped in"
    apply_demotions(demoted, chains, results)
    rec = results["acoustic_decoder/onnxruntime/select"].record
    assert rec["accepted"] == "fp32" and rec["rejected"][0]["reason"] == demoted[0]["reason"]
    assert chain_demotions(chain, chains, results) == []                   # already at its fallback
    chain["runtimes"]["onnxruntime"]["rows"][3]["stoi"] = 0.95              # the vocoder's audio less intelligible
    assert [d["model"] for d in chain_demotions(chain, chains, results)] == ["vocoder"]


def test_openvino_ir_names_are_deterministic():
    from voxc.targets.openvino import deterministic_names
    a = '<layer id="3" name="Transpose_280846"/><layer name="Range_273280"/><x value="Transpose_280846"/>'
    b = '<layer id="3" name="Transpose_191603"/><layer name="Range_184037"/><x value="Transpose_191603"/>'
    assert deterministic_names(a) == deterministic_names(b) == \
        '<layer id="3" name="Transpose_0"/><layer name="Range_1"/><x value="Transpose_0"/>'
    fresh = '<layer name="Constant_35"/><layer name="Constant_0"/>'    # a fresh process counts from 0
    assert deterministic_names(fresh) == deterministic_names('<layer name="Constant_7"/><layer name="Constant_35"/>')
    assert deterministic_names('<layer name="conv_pre"/><port names="waveform"/>') == \
        '<layer name="conv_pre"/><port names="waveform"/>'
