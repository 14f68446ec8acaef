"""The parts a user's own vocoder goes through, each on its own (fast): the HiFi-GAN shapes, the mel front
end as data, sample-rate-aware metrics, the audio folder, TorchScript weights, where int8 settings come
from, the one-shot sensitivity ranking and the mixed-precision search, and gates with no usable item."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voxc.core import audio, audio_metrics
from voxc.core.errors import VoxcError
from voxc.core.mel import MelFrontEnd, resample
from voxc.models.hifigan import Generator

V1_16K = {"initial_channels": 32, "upsample_rates": [8, 5, 2, 2], "upsample_kernels": [16, 10, 4, 4],
          "upsample_paddings": [4, 3, 1, 1], "upsample_output_paddings": [0, 1, 0, 0], "resblock": "1",
          "resblock_kernels": [3], "resblock_dilations": [[1, 3]]}


def test_a_hifigan_with_output_padding_makes_hop_samples_per_frame():
    g = Generator(V1_16K).eval()
    assert g.ups[1].output_padding == (1,) and g.post_slope == 0.01 and g.slope == 0.1
    with torch.no_grad():
        assert g(torch.zeros(1, 80, 13)).shape == (1, 1, 13 * 160)


def test_a_hifigan_stage_that_does_not_upsample_exactly_is_refused():
    with pytest.raises(VoxcError, match="upsample stage 1"):
        Generator({**V1_16K, "upsample_output_paddings": [0, 0, 0, 0]})


def test_the_default_mel_front_end_is_voxcs_own_mel():
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    np.testing.assert_allclose(MelFrontEnd().log_mel(wave), audio.log_mel(wave), atol=1e-4)
    mel10 = MelFrontEnd(sample_rate=24000, win=960, hop=240, fmax=11000.0, log_base="10").log_mel(resample(wave, 16000, 24000))
    assert mel10.shape == (80, 100)
    with pytest.raises(VoxcError, match="fmax"):
        MelFrontEnd(sample_rate=16000, fmax=9000.0)


def test_metrics_hear_audio_at_its_own_rate():
    from voxc.calibration.sets import load_set
    wave = load_set("parity")[0].wave
    at24 = resample(wave, 16000, 24000)
    same = audio_metrics.waveform_metrics(at24[None, None], at24[None, None], sample_rate=24000)
    assert same["pesq_wb"] > 4.5 and same["stoi"] > 0.99
    noisy = at24 + np.random.default_rng(1).normal(0, 0.02, at24.size).astype(np.float32)
    worse = audio_metrics.waveform_metrics(at24[None, None], noisy[None, None], ("pesq_wb", "stoi"), sample_rate=24000)
    assert worse["pesq_wb"] < same["pesq_wb"] - 0.5


def test_an_audio_folder_is_hashed_by_content_and_split(tmp_path):
    import soundfile as sf
    from voxc.calibration import audio_folder
    with pytest.raises(VoxcError, match="no .wav or .flac"):
        audio_folder.files(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(5):
        sf.write(str(tmp_path / f"c{i}.flac"), rng.normal(0, 0.1, 8000 + 100 * i).astype(np.float32), 8000)
    mel = MelFrontEnd()
    h = audio_folder.folder_hash(tmp_path, mel)
    parity, cal = audio_folder.load(tmp_path, mel, "parity"), audio_folder.load(tmp_path, mel, "calibration")
    assert len(parity) == 2 and len(cal) == 3 and not parity[0].aligned and parity[0].wave.size % 256 == 0
    (tmp_path / "c0.flac").rename(tmp_path / "renamed.flac")
    assert audio_folder.folder_hash(tmp_path, mel) == h                       # content, not paths
    assert audio_folder.folder_hash(tmp_path, MelFrontEnd(hop=128)) != h      # the mel settings too
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(VoxcError, match="cannot read"):
        audio_folder.load(tmp_path, mel, "parity")


def test_a_stage_refuses_data_other_than_its_key_names(tmp_path, monkeypatch):
    """A worker that cannot see the build's --data folder (a Ray node without it, or the folder at another
    path) reads the committed sets instead; the stage must refuse rather than store that under the key of
    the user's data. (Ray workers are given VOXC_DATA and VOXC_FAMILIES in their environment.)"""
    import soundfile as sf
    from voxc.calibration.audio_folder import ENV, folder_hash
    from voxc.calibration.feeds import same_data
    from voxc.models.family import family
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(str(tmp_path / f"c{i}.wav"), rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    fam = family("voxc")
    planned = folder_hash(tmp_path, fam.mel_front_end())     # what a build with --data plans with
    monkeypatch.setenv(ENV, str(tmp_path))
    same_data(fam, "parity", planned)                          # the folder is here: the same data
    same_data(fam, "parity", None)                             # a stage that reads no data set
    monkeypatch.delenv(ENV)
    with pytest.raises(VoxcError, match="sees other parity data .* a --data folder must be readable at the same path"):
        same_data(fam, "parity", planned)


def test_torchscript_weights_are_read_and_setstate_archives_refused(tmp_path):
    from voxc.models.weights import read_checkpoint
    g = Generator(V1_16K).eval()
    torch.jit.trace(g, torch.zeros(1, 80, 8)).save(str(tmp_path / "g.ts"))
    state = read_checkpoint(tmp_path / "g.ts")
    assert set(state) == set(g.state_dict()) and torch.equal(state["ups.1.weight"], g.state_dict()["ups.1.weight"])

    class Stateful(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            self.w = state[0]
            self.training = state[1]
    torch.jit.script(Stateful()).save(str(tmp_path / "s.ts"))
    with pytest.raises(VoxcError, match="__setstate__"):
        read_checkpoint(tmp_path / "s.ts")


def test_int8_settings_come_from_the_graph_then_the_user_not_the_profiles_name_table():
    from voxc.compiler.rung_options import options
    from voxc.models.family import Graph
    profile = {"options": {"onnxruntime": {"per_channel": True, "op_types": ["Conv"],
                                           "models": {"vocoder": {"op_types": ["MatMul", "Gemm"]}}}}}
    theirs, mine = Graph("vocoder", None, None, (), ()), Graph("vocoder", None, None, (), (),
                                                                  quantisation={"*": {"op_types": "auto"}})
    assert options(profile, "onnxruntime", theirs)["op_types"] == ["MatMul", "Gemm"]
    assert options(profile, "onnxruntime", mine) == {"per_channel": True, "op_types": "auto"}
    user = {"onnxruntime": {"calibrate_method": "entropy", "models": {"vocoder": {"op_types": ["Conv"]}}}}
    assert options(profile, "onnxruntime", mine, user) == {"per_channel": True, "op_types": ["Conv"],
                                                           "calibrate_method": "entropy"}


def test_op_types_auto_are_the_weighted_layer_types_of_the_graph(tmp_path):
    import onnx
    from voxc.targets.int8_search import resolve_op_types
    torch.onnx.export(Generator(V1_16K).eval(), (torch.zeros(1, 80, 8),), str(tmp_path / "g.onnx"), dynamo=False)
    assert resolve_op_types(onnx.load(str(tmp_path / "g.onnx")), "auto") == ["Conv", "ConvTranspose"]


class _Branches(nn.Module):
    """Two branches; the second never reaches the output, so its quantisation noise cannot matter."""

    def __init__(self):
        super().__init__()
        self.heard, self.unheard = nn.Conv1d(4, 4, 3, padding=1), nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.heard(x) + 0.0 * self.unheard(x)


def test_the_one_shot_ranking_scores_what_reaches_the_output():
    from voxc.targets.int8_search import rank_layers
    torch.manual_seed(0)
    feeds = [{"x": np.random.default_rng(i).normal(0, 1, (1, 4, 32)).astype(np.float32)} for i in range(3)]
    ranking = dict(rank_layers(_Branches(), feeds, ["x"]))
    assert list(ranking) == ["heard", "unheard"] and ranking["heard"] > 0 and ranking["unheard"] == 0


def test_the_mixed_precision_search_keeps_the_fewest_layers_float_that_pass():
    from voxc.targets.int8_search import SEARCH_DEFAULTS, mixed_precision
    ranking = [(f"l{i}", [f"/l{i}/Conv"], 1.0 / (i + 1)) for i in range(8)]
    calls = []

    def evaluate(method, kept):            # each float layer takes 0.3 off; percentile starts better
        calls.append((method, len(kept)))
        return (2.0 if method == "minmax" else 1.6) - 0.3 * len(kept)
    two = {**SEARCH_DEFAULTS, "methods": ["minmax", "percentile"]}
    r = mixed_precision(ranking, evaluate, {**two, "steps": [1, 2, 4, 8]})
    assert r["method"] == "percentile" and r["float_layers"] == ["l0", "l1", "l2", "l3"] and r["passed"]
    assert calls == [("minmax", 0), ("percentile", 0), ("percentile", 1), ("percentile", 2), ("percentile", 4)]
    never = mixed_precision(ranking, lambda m, kept: 5.0 - 0.1 * len(kept), {**two, "steps": [2, 4]})
    assert not never["passed"] and len(never["float_layers"]) == 4


def test_the_search_keeps_the_first_listed_method_that_passes_with_every_layer_int8():
    """Listed in order of preference: static QDQ when it keeps the audio, the dynamic form when only it does."""
    from voxc.targets.int8_search import SEARCH_DEFAULTS, mixed_precision
    ranking = [(f"l{i}", [f"/l{i}/Conv"], 1.0 / (i + 1)) for i in range(4)]
    scores = {"minmax": 2.4, "percentile": 1.9, "dynamic": 0.3}
    r = mixed_precision(ranking, lambda m, kept: scores[m], SEARCH_DEFAULTS)
    assert SEARCH_DEFAULTS["methods"][-1] == "dynamic"
    assert r["method"] == "dynamic" and r["float_layers"] == [] and r["passed"] and len(r["trials"]) == 3
    scores.update(percentile=0.7)
    r = mixed_precision(ranking, lambda m, kept: scores[m], SEARCH_DEFAULTS)
    assert r["method"] == "percentile" and r["passed"]


def test_a_streaming_gate_with_no_item_fails_with_a_reason():
    from voxc.compiler.chain import stream_gate
    from voxc.models.spec import Dim, ModelSpec, TensorSpec
    spec = ModelSpec(name="v", inputs=(TensorSpec("mel", "float32", ("batch", 80, "frames")),),
                     outputs=(TensorSpec("waveform", "float32", ("batch", 1, "frames*160"), "waveform"),),
                     dims={"batch": Dim("batch", 1, 1, 1, 1), "frames": Dim("frames", 8, 16, 16, 32)},
                     sweep_dim="frames", make_inputs=lambda b, n, rng: {})
    s = stream_gate(None, spec, [], {"pesq_wb": 4.5})
    assert not s["passed"] and s["items"] == 0 and "no usable" in s["reason"]


def test_only_families_that_need_alignments_restrict_the_chain_to_aligned_items(monkeypatch):
    from voxc.compiler.chain import needs_alignment
    from voxc.models.family import family
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).resolve().parents[1] / "docs" / "examples"))
    import my_vocoder
    import toy_family
    assert needs_alignment(toy_family.FAMILY) and needs_alignment(family("voxc"))
    assert not needs_alignment(my_vocoder.FAMILY)
