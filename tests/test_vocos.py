"""The Vocos-family vocoder (in-graph inverse STFT) and the int8 sensitivity pass."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from voxc.calibration.feeds import FeedMaker, calibration_feeds, sweep_feeds
from voxc.calibration.sets import load_set
from voxc.cli import main
from voxc.core import audio
from voxc.models.voxc.presets import preset
from voxc.models.family import init_module, model_spec
from voxc.targets import onnxruntime as ortb
from voxc.targets.ort_runner import OrtRunner
from voxc.targets import sensitivity
from voxc.targets.runner import TorchRunner


def _vocos_cfg() -> dict:
    cfg = preset("tiny")
    cfg["vocoder"] = "vocos_tiny"
    return cfg


def test_in_graph_istft_inverts_the_analysis_stft_of_real_speech():
    """The vocoder's inverse STFT undoes models.audio's framing exactly, edges included."""
    wave = load_set("parity")[0].wave
    frames = wave.size // audio.HOP
    x = torch.from_numpy(np.ascontiguousarray(wave[:frames * audio.HOP], np.float32))
    padded = torch.nn.functional.pad(x[None, None], (audio.PAD, audio.PAD), mode="reflect")[0]
    spec = torch.stft(padded, audio.N_FFT, hop_length=audio.HOP, win_length=audio.WIN,
                      window=torch.hann_window(audio.WIN), center=False, return_complex=True)   # [1, F, T]
    assert spec.shape[-1] == frames
    vocos = init_module("vocoder", _vocos_cfg())
    y = vocos.istft(torch.cat([spec.real, spec.imag], dim=1).transpose(1, 2))
    assert y.shape == (1, frames * audio.HOP)
    assert float((y[0] - x).abs().max()) < 1e-4
    damaged = spec.clone()
    damaged[:, :, int(spec.abs().sum(1).argmax())] *= 1.5                  # one frame off: detected
    z = vocos.istft(torch.cat([damaged.real, damaged.imag], dim=1).transpose(1, 2))
    assert float((z[0] - x).abs().max()) > 1e-2


def test_four_step_inverse_dft_equals_windowed_irfft():
    """The vocoder's four-step inverse DFT is window * irfft, Nyquist bin included (a wrong twiddle,
    index order or Nyquist sign would be off by the signal's own size), at batch > 1."""
    from voxc.models.voxc.vocos import InverseDFT
    idft = InverseDFT(audio.N_FFT)
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(2, 5, audio.N_FFT + 2)).astype(np.float32))
    f = audio.N_FFT // 2 + 1
    ref = np.fft.irfft(x[..., :f].numpy() + 1j * x[..., f:].numpy(), n=audio.N_FFT, axis=-1)
    ref = ref * np.sin(np.pi * np.arange(audio.N_FFT) / audio.N_FFT) ** 2
    got = idft(x).numpy()
    assert got.shape == (2, 5, audio.N_FFT)
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
    nyquist = x.clone()
    nyquist[..., f - 1] += 1.0                                # +1 at the Nyquist bin: window * (-1)^n / n_fft
    moved = (idft(nyquist) - idft(x)).numpy()
    expected = np.sin(np.pi * np.arange(audio.N_FFT) / audio.N_FFT) ** 2 * (-1.0) ** np.arange(audio.N_FFT) / audio.N_FFT
    assert np.abs(moved - expected).max() < 1e-6


def test_vocos_magnitude_starts_from_the_mel_prior():
    """Untrained, the predicted magnitude is the mel's least-squares linear spectrum (the correction
    rows of the output layer start at zero), so mel(output magnitude) reproduces the input mel."""
    vocos = init_module("vocoder", _vocos_cfg())
    mel = torch.from_numpy(np.ascontiguousarray(load_set("parity")[0].mel[:, :64]))[None]
    prior = torch.clamp(torch.exp(mel).transpose(1, 2) @ vocos.mel_pinv, min=audio.LOG_FLOOR)
    back = torch.log(torch.clamp(prior @ torch.from_numpy(audio.mel_basis()).T, min=audio.LOG_FLOOR))
    speech = mel[0].exp().sum(0) > mel[0].exp().sum(0).max() * 1e-2
    assert float((back[0].T[:, speech] - mel[0][:, speech]).abs().mean()) < 0.1   # clamping negatives costs ~0.07
    f = vocos.n_fft // 2 + 1
    assert float(vocos.out.weight.detach()[:f].abs().max()) == 0.0 and float(vocos.out.weight.detach()[f:].abs().max()) > 0


@pytest.mark.slow
def test_vocos_exports_with_a_dynamic_frame_axis_and_passes_parity(tmp_path):
    code = main(["build", "--target", "onnxruntime", "--preset", "tiny", "--set", "vocoder=vocos_tiny",
                 "--models", "vocoder", "--precisions", "vocoder=fp32", "--artifacts", str(tmp_path), "--jobs", "1"])
    assert code == 0
    manifest = json.loads((tmp_path / "onnxruntime" / "manifest.json").read_text())
    v = manifest["models"]["vocoder"]
    assert v["parity"] == "pass" and v["outputs"][0]["dims"] == ["batch", 1, "frames*256"]
    ops = set(v["graph"]["ops"])
    assert {"Cos", "Sin", "Concat", "MatMul"} <= ops and not ops & {"ConvTranspose", "Pad"}   # Core ML: no n-d Pad


def test_sensitivity_search_keeps_the_most_helpful_layers_until_the_target():
    # a fake quantised model: each float layer removes some error; "b" alone is enough, "c" does nothing
    help_ = {"a": 0.3, "b": 0.9, "c": 0.0, "d": 0.2}
    calls = []

    def evaluate(kept):
        calls.append(list(kept))
        return round(2.0 - sum(help_[k] for k in kept), 4)
    r = sensitivity.keep_sensitive(list(help_), evaluate, max_layers=3, target=0.8)
    assert r["score_all_int8"] == 2.0 and list(r["trials"])[0] == "b"
    assert r["kept_fp32"] == ["b", "a"] and r["score"] == 0.8
    r = sensitivity.keep_sensitive(list(help_), evaluate, max_layers=1, target=0.5)
    assert r["kept_fp32"] == ["b"] and r["score"] > r["target"]            # budget of layers spent: reported
    assert sensitivity.keep_sensitive(["c"], evaluate, 3, 0.5)["kept_fp32"] == []   # no help: keep nothing
    assert sensitivity.keep_sensitive(list(help_), lambda k: 0.1, 3, 0.8)["trials"] == {}   # passes at once


@pytest.mark.parametrize("row, passes", [
    ({"metric": "mcd_db", "value": 0.5, "tolerance": 1.0}, True),
    ({"metric": "mcd_db", "value": 1.5, "tolerance": 1.0}, False),
    ({"metric": "snr_db", "value": 30.0, "tolerance": 25.0}, True),
    ({"metric": "snr_voiced_db", "value": 20.0, "tolerance": 25.0}, False),
    ({"metric": "cosine", "value": 0.999, "tolerance": 0.995}, True),
    ({"metric": "exact_match", "value": 0.5, "tolerance": 0.85}, False),
    ({"metric": "rel_l2", "value": float("nan"), "tolerance": 0.1}, False),
])
def test_sensitivity_excess_reads_each_metric_in_its_direction(row, passes):
    assert (sensitivity.excess(row) < 1.0) == passes


@pytest.mark.slow
def test_int8_sensitivity_pass_is_recorded_and_kept_layers_stay_float(tiny_build, tiny_cfg, tmp_path):
    from voxc.calibration.feeds import upstream_graphs
    from safetensors.torch import load_file
    name = "acoustic_decoder"
    refs = {}
    for n in upstream_graphs(name, tiny_cfg):
        m = init_module(n, tiny_cfg)
        m.load_state_dict(load_file(str(tiny_build / "cpu" / n / "reference.safetensors")))
        refs[n] = TorchRunner(m.eval(), model_spec(n, tiny_cfg))
    spec = model_spec(name, tiny_cfg)
    maker = FeedMaker(name, spec, tiny_cfg, refs)
    items = calibration_feeds(maker, 12, max_length=spec.dims["frames"].opt)
    # a strict target forces the search to run on the tiny random-weight decoder
    rec = ortb.OnnxRuntime().build(tiny_build / "cpu" / name / f"{name}.onnx", tmp_path, "int8", spec, items[:8],
                     {"validation": items[8:], "sensitivity_target": 1e-6, "sensitivity_layers": 2})
    s = rec["sensitivity"]
    assert s["trials"] and len(s["kept_fp32"]) <= 2 and set(s["kept_fp32"]) <= set(rec["fp32_nodes"])
    assert all(v >= 0 for v in s["trials"].values()) and s["score"] <= s["score_all_int8"]
    model = onnx.load(str(tmp_path / rec["file"]))
    inits = {i.name: i for i in model.graph.initializer}
    for node in (n for n in model.graph.node if n.name in s["kept_fp32"]):   # kept layers read float weights
        weights = [inits[i] for i in node.input if i in inits]
        assert weights and all(w.data_type == onnx.TensorProto.FLOAT for w in weights)
    quantised = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert quantised                                                       # the rest is int8
    got = OrtRunner(tmp_path / rec["file"]).infer(sweep_feeds(maker, 1, 40))["mel"]
    assert got.shape == (1, 80, 40) and np.isfinite(got).all()
