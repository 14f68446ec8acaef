"""The reference voice: training steps learn, quality metrics are right, synthesis has the right
length, the committed light weights load (without Festival or the corpus)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voxc.core import audio
from voxc.models.voxc.presets import preset
from voxc.models.family import init_module
from voxc.models.weights import save_safetensors
from voxc.voice import losses, quality, train
from voxc.voice.data import Split

ROOT = Path(__file__).resolve().parent.parent


def _utterance(rng, frames: int, f0: float, n_phones: int):
    t = np.arange(frames * audio.HOP) / audio.SAMPLE_RATE
    wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 2.5 * f0 * t) + 0.01 * rng.normal(size=t.shape)
    wave = (wave * np.minimum(1, np.minimum(t, t[-1] - t) * 20)).astype(np.float32)
    cuts = np.sort(rng.choice(np.arange(1, frames), size=n_phones - 1, replace=False))
    durations = np.diff(np.concatenate([[0], cuts, [frames]])).astype(np.int64)
    return wave, audio.log_mel(wave), durations


@pytest.fixture(scope="module")
def fake_corpus(tmp_path_factory) -> Path:
    """A corpus folder in the calibration/corpus.py layout: 3 speakers x 3 styles, some aligned."""
    out = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for split, n_per in (("train", 4), ("validation", 2), ("parity", 2)):
        cols = {k: [] for k in ("mels", "waves", "phoneme_ids", "durations", "pitch", "energy", "frame_pitch",
                                "frame_energy", "speaker_id", "style_id", "text", "utt_id")}
        offs = {"mel_offsets": [0], "wave_offsets": [0], "phone_offsets": [0]}
        k = 0
        for spk in range(3):
            for sty in range(3):
                for _ in range(n_per):
                    frames = int(rng.integers(40, 70))
                    wave, mel, dur = _utterance(rng, frames, 100 + 60 * spk + 20 * sty, 8)
                    aligned = spk < 2
                    n = len(dur) if aligned else 0
                    cols["mels"].append(mel); cols["waves"].append(wave)
                    cols["phoneme_ids"].append(rng.integers(1, 40, size=n)); cols["durations"].append(dur[:n])
                    cols["pitch"].append(np.full(n, 120.0, np.float32)); cols["energy"].append(np.full(n, 20.0, np.float32))
                    cols["frame_pitch"].append(np.zeros(frames, np.float32)); cols["frame_energy"].append(np.zeros(frames, np.float32))
                    cols["speaker_id"].append(spk); cols["style_id"].append(sty)
                    cols["text"].append("a test."); cols["utt_id"].append(f"u{k:03d}"); k += 1
                    offs["mel_offsets"].append(offs["mel_offsets"][-1] + frames)
                    offs["wave_offsets"].append(offs["wave_offsets"][-1] + len(wave))
                    offs["phone_offsets"].append(offs["phone_offsets"][-1] + n)
        arrays = {"mels": np.concatenate(cols["mels"], axis=1), "waves": np.concatenate(cols["waves"]),
                  **{c: np.concatenate(cols[c]) for c in ("phoneme_ids", "durations", "pitch", "energy",
                                                          "frame_pitch", "frame_energy")},
                  **{c: np.array(cols[c]) for c in ("speaker_id", "style_id", "text", "utt_id")},
                  **{o: np.array(v, np.int64) for o, v in offs.items()},
                  "speakers": np.array(["fest_a", "fest_b", "espk_lanc_m7"]),
                  "styles": np.array(["neutral", "fast_high", "slow_low"])}
        np.savez(out / f"{split}.npz", **arrays)
    return out


def _steps_reduce(loss_fn, params, n=8, lr=3e-3) -> tuple[float, float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(params, lr=lr)
    first = None
    for _ in range(n):
        loss = loss_fn()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss_fn().item()


def test_vocoder_training_steps_reduce_loss(fake_corpus):
    cfg = preset("tiny")
    split = Split.load(fake_corpus, "train")
    gen = init_module("vocoder", cfg).train()
    mel = torch.from_numpy(np.ascontiguousarray(split.mel(0)[:, :32]))[None]
    wave = torch.from_numpy(split.wave(0)[:32 * 256])[None]

    def loss():
        y = gen(mel).squeeze(1)
        return losses.mel_l1(y, mel) + losses.mrstft(y, wave)
    first, last = _steps_reduce(loss, list(gen.parameters()))
    assert last < 0.9 * first


def test_acoustic_training_steps_reduce_loss(fake_corpus):
    cfg = preset("tiny")
    split = Split.load(fake_corpus, "train")
    enc, reg, dec = (init_module(n, cfg).train() for n in ("acoustic_encoder", "length_regulator", "acoustic_decoder"))
    idx = [0, 1, 2]
    b = train.acoustic_batch(split, idx, np.ones((3, cfg["speaker_dim"]), np.float32) / 16,
                             np.zeros((3, cfg["emotion_dim"]), np.float32))
    assert b["frame_mask"].sum(1).tolist() == [split.frames(i) for i in idx]
    assert b["durations"].sum(1).tolist() == [split.frames(i) for i in idx]

    def loss():
        return sum(train.acoustic_losses(train.acoustic_forward(enc, reg, dec, b), b).values())
    first, last = _steps_reduce(loss, list(enc.parameters()) + list(dec.parameters()))
    assert last < 0.8 * first


def test_ge2e_loss_prefers_separated_speakers():
    rng = np.random.default_rng(0)
    centres = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(4, 1, 16))), dim=-1)
    tight = torch.nn.functional.normalize(centres + 0.05 * torch.from_numpy(rng.normal(size=(4, 5, 16))), dim=-1)
    mixed = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(4, 5, 16))), dim=-1)
    w, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)
    assert train.ge2e_loss(tight, w, b) < 0.1 < train.ge2e_loss(mixed, w, b)


def test_train_end_to_end_resumes_and_installs(fake_corpus, tmp_path, monkeypatch):
    """All four loops on the tiny preset for a few steps; a second call resumes instead of restarting."""
    monkeypatch.setitem(train.DEFAULTS, "speaker_encoder", {**train.DEFAULTS["speaker_encoder"],
                                                             "speakers_per_batch": 3, "utts_per_speaker": 2,
                                                             "ref_frames": 32})
    monkeypatch.setitem(train.DEFAULTS, "emotion_encoder", {**train.DEFAULTS["emotion_encoder"], "batch": 6,
                                                             "ref_frames": 32})
    monkeypatch.setitem(train.DEFAULTS, "acoustic", {**train.DEFAULTS["acoustic"], "batch": 2})
    monkeypatch.setitem(train.DEFAULTS, "vocoder", {**train.DEFAULTS["vocoder"], "batch": 2, "segment_frames": 16})
    out = tmp_path / "train"
    train.train(list(train.TRAINABLE), "tiny", fake_corpus, out, seed=3, overrides={"steps": 2})
    state = torch.load(out / "tiny" / "vocoder" / "state.pt", weights_only=True)
    assert state["step"] == 2
    train.train(["vocoder"], "tiny", fake_corpus, out, seed=3, overrides={"steps": 3})
    assert torch.load(out / "tiny" / "vocoder" / "state.pt", weights_only=True)["step"] == 3
    assert "resumed vocoder at step 2" in (out / "tiny" / "vocoder" / "log.txt").read_text()
    summary = train.install("tiny", out, tmp_path / "weights")
    assert summary["models"]["vocoder"]["steps"] == 3
    assert {p.name for p in (tmp_path / "weights").iterdir()} >= {
        "vocoder.safetensors", "acoustic_encoder.safetensors", "style_centroids.safetensors", "training.json"}


# ---------------------------------------------------------------- metrics

def test_eer_constructed_cases():
    assert quality.eer_from_scores(np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.0, 0.5])) == 0.0
    # one crossing pair: FRR 1/4 and FAR between 2/5 and 1/5 -> equal at 1/4
    assert quality.eer_from_scores(np.array([0, 1, 2, 3.0]), np.array([0.5, -1, -2, -3, 2.5])) == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    from scipy.stats import norm
    got = quality.eer_from_scores(rng.normal(1, 1, 50000), rng.normal(-1, 1, 50000))
    assert got == pytest.approx(norm.cdf(-1), abs=0.01)
    # embeddings: two tight clusters -> 0; identical embeddings for everyone -> 0.5-ish chance level
    e = np.array([[1, 0.01], [1, -0.01], [0.01, 1], [-0.01, 1]])
    assert quality.eer(e, np.array([0, 0, 1, 1])) == 0.0


def test_griffin_lim_and_distances_on_a_known_signal():
    t = np.arange(64 * audio.HOP) / audio.SAMPLE_RATE
    rng = np.random.default_rng(0)
    # a 150 Hz harmonic tone with a little noise (no bins at the log floor)
    wave = (sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 40))
            + 0.003 * rng.normal(size=t.shape)).astype(np.float32)
    mel = audio.log_mel(wave)
    assert quality.logmel_l1(wave, mel) == pytest.approx(0.0, abs=1e-6)
    assert quality.mrstft_distance(wave, wave) == pytest.approx(0.0, abs=1e-6)
    # before clipping, the pseudo-inverse magnitude reproduces the mel (M pinv(M) = I); after, it is >= 0
    basis = audio.mel_basis().astype(np.float64)
    assert np.allclose(basis @ (np.linalg.pinv(basis) @ np.exp(mel.astype(np.float64))), np.exp(mel), rtol=1e-4)
    mag = quality.mel_to_linear(mel)
    assert mag.shape == (audio.N_FFT // 2 + 1, mel.shape[1]) and mag.min() >= 0
    noise = rng.normal(0, 0.1, size=wave.shape).astype(np.float32)
    scores = {it: quality.logmel_l1(quality.griffin_lim(mel, it, momentum=0.0), mel) for it in (0, 1, 32)}
    gl = quality.griffin_lim(mel, 32, momentum=0.0)
    assert gl.shape == wave.shape and gl.dtype == np.float32
    # iterations converge (random phase 0.79 -> 0.41 -> 0.34 here), and all beat white noise by far
    assert scores[32] < scores[1] < 0.6 * scores[0] and scores[0] < 0.7 * quality.logmel_l1(noise, mel)
    assert scores[32] == pytest.approx(0.336, abs=0.03)
    assert quality.mrstft_distance(gl, wave) < 0.5 * quality.mrstft_distance(noise, wave)
    assert quality.logmel_l1(quality.griffin_lim(mel, 32, momentum=0.99), mel) < scores[32]   # fast GL


def test_oracle_spectra_round_trip_and_rank_on_real_speech():
    """analysis_spectrum / resynthesize are exact inverses on a held-out recording; the report's
    oracles rank as they must: the recording's own magnitude makes Griffin-Lim far better than the
    mel's smooth one, and its own phase does too. A broken oracle (e.g. a transposed spectrum or a
    framing shifted by a hop) lands above plain Griffin-Lim."""
    from voxc.calibration.sets import load_set
    wave = load_set("parity")[0].wave
    frames = wave.size // audio.HOP
    wave = wave[:frames * audio.HOP]
    mel = audio.log_mel(wave)
    true = quality.analysis_spectrum(wave, frames)
    assert true.shape == (audio.N_FFT // 2 + 1, frames)
    assert np.abs(quality.resynthesize(true) - wave).max() < 1e-5
    plain = quality.logmel_l1(quality.griffin_lim(mel, 32, momentum=0.0), mel)
    own_mag = quality.logmel_l1(quality.griffin_lim_magnitude(np.abs(true), 32, momentum=0.0), mel)
    own_phase = quality.logmel_l1(quality.resynthesize(quality.mel_to_linear(mel) * np.exp(1j * np.angle(true))), mel)
    assert own_mag < 0.8 * plain and own_phase < plain
    shifted = np.roll(true, 1, axis=1)
    assert quality.logmel_l1(quality.resynthesize(shifted), mel) > plain


# ---------------------------------------------------------------- synthesis

def _tiny_voice_files(tmp_path) -> tuple[dict, Path]:
    from safetensors.torch import save_file
    from voxc.voice.weights import TRAINED_MODELS
    cfg = preset("tiny")
    ckpts = {}
    for name in TRAINED_MODELS:
        ckpts[name] = tmp_path / f"{name}.safetensors"
        save_safetensors(init_module(name, cfg), ckpts[name])
    centroids = tmp_path / "centroids.safetensors"
    save_file({"centroids": torch.zeros(3, cfg["emotion_dim"])}, str(centroids))
    return ckpts, centroids


def test_synth_waveform_length_matches_durations(tmp_path):
    from voxc.voice.synth import Voice
    ckpts, centroids = _tiny_voice_files(tmp_path)
    voice = Voice(ckpts, preset_name="tiny", centroids=centroids)
    ref = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    wave, info = voice.synthesize("Hello world.", ref, "fast_high")
    assert info["frames"] == sum(info["durations"]) and len(info["durations"]) == len(info["phonemes"])
    assert wave.shape == (info["frames"] * audio.HOP,) and np.isfinite(wave).all()


COMMITTED = ROOT / "voice" / "weights"


@pytest.mark.skipif(not (COMMITTED / "vocoder.safetensors").is_file(), reason="no committed voice")
def test_committed_voice_loads_and_speaks(tmp_path):
    from voxc.voice.synth import Voice, read_wav, write_wav
    from voxc.voice.weights import TRAINED_MODELS
    from voxc.core.hashing import sha256_file as sha256
    card = json.loads((COMMITTED / "training.json").read_text())
    total = 0
    for f in COMMITTED.glob("*.safetensors"):
        assert card["files"][f.name]["sha256"] == sha256(f)
        total += f.stat().st_size
    assert total <= 30 * 2**20
    voice = Voice()                                        # the light preset from voice/weights
    assert set(TRAINED_MODELS) <= set(voice.modules)
    from voxc.calibration.sets import load_set
    ref = load_set("parity")[0].wave                       # committed set, no corpus or Festival needed
    write_wav(tmp_path / "ref.wav", ref)
    wave, info = voice.synthesize("The cat sat on the mat.", read_wav(tmp_path / "ref.wav"), "neutral")
    assert wave.shape == (info["frames"] * audio.HOP,)
    assert 0.5 < len(wave) / audio.SAMPLE_RATE < 4.0 and np.abs(wave).max() > 0.05


def test_light_build_defaults_to_the_trained_voice(monkeypatch):
    from voxc.compiler.cli import _request
    from voxc.cli import parser
    from voxc.voice.weights import weight_path
    if not weight_path("vocoder").is_file():
        pytest.skip("no committed voice")
    req = _request(parser().parse_args(["build", "--preset", "light"]))
    assert req.checkpoints["vocoder"] == weight_path("vocoder") and "length_regulator" not in req.checkpoints
    assert req.weight_sources["acoustic_decoder"] == "trained voice"
    assert _request(parser().parse_args(["build", "--preset", "light", "--seeded"])).checkpoints == {}
    assert _request(parser().parse_args(["build", "--preset", "tiny"])).checkpoints == {}
    changed = _request(parser().parse_args(["build", "--preset", "light", "--set", "vocoder=tiny"]))
    assert "vocoder" not in changed.checkpoints and "acoustic_decoder" in changed.checkpoints
    own = _request(parser().parse_args(["build", "--preset", "light", "--checkpoint", "vocoder=/etc/hostname"]))
    assert own.checkpoints["vocoder"] == Path("/etc/hostname") and own.weight_sources["vocoder"] == "user checkpoint"
