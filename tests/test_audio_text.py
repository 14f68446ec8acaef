"""Fast checks of the shared audio features (models/audio.py), the text front end
(models/text.py) and the committed calibration sets' reader (calibration/sets.py)."""

from __future__ import annotations

import random
import shutil
import string

import numpy as np
import pytest
import torch

from voxc.core import audio
from voxc.models import text as T

SR = audio.SAMPLE_RATE


def _speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonic tone with a gliding F0, noise bursts and a silent gap, peak 0.9."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 25)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.05 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.7)
    x[len(x) // 3: len(x) // 3 + 2000] = 0.0
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


# ---------------------------------------------------------------- audio
def test_mel_basis_is_slaney():
    b = audio.mel_basis()
    assert b.shape == (80, 513) and b.dtype == np.float32
    assert (b >= 0).all() and (b.sum(axis=1) > 0).all()
    # slaney scale: linear to 1 kHz (15 mels), log above
    assert audio._hz_to_mel(1000.0) == pytest.approx(15.0)
    assert audio._hz_to_mel(8000.0) == pytest.approx(15.0 + np.log(8.0) / (np.log(6.4) / 27.0))
    assert audio._mel_to_hz(audio._hz_to_mel(3456.0)) == pytest.approx(3456.0)
    # slaney area normalisation: each triangle integrates to ~1 over Hz (wide filters only)
    area = b.sum(axis=1) * (SR / audio.N_FFT)
    wide = (b > 0).sum(axis=1) >= 8
    assert wide.sum() > 30
    np.testing.assert_allclose(area[wide], 1.0, rtol=0.05)
    peaks = b.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > 480


@pytest.mark.parametrize("n", [1000, 16000, 16255, 16256, 12345])
def test_frames_equal_samples_over_hop(n):
    x = _speechlike(1.1)[:n]
    assert audio.log_mel(x).shape == (80, n // 256)
    assert audio.log_mel(torch.from_numpy(x)).shape == (80, n // 256)
    f0, e = audio.pitch_energy(x)
    assert f0.shape == e.shape == (n // 256,)


def test_numpy_matches_torch_and_keeps_type():
    x = np.stack([_speechlike(1.0, 0), _speechlike(1.0, 1) * 0.01])
    m_np = audio.log_mel(x)
    m_t = audio.log_mel(torch.from_numpy(x))
    assert isinstance(m_np, np.ndarray) and isinstance(m_t, torch.Tensor)
    assert m_np.dtype == np.float32 and m_t.dtype == torch.float32
    assert m_np.shape == tuple(m_t.shape) == (2, 80, 62)
    assert np.abs(m_np - m_t.numpy()).max() < 1e-4
    # batch rows equal single calls
    np.testing.assert_allclose(m_np[1], audio.log_mel(x[1]), atol=1e-6)


def test_torch_path_is_differentiable():
    x = torch.from_numpy(_speechlike(0.5)).requires_grad_(True)
    loss = audio.log_mel(x).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_silence_hits_the_log_floor_and_sine_lands_in_its_band():
    z = audio.log_mel(np.zeros(4096, np.float32))
    expected = np.log(np.maximum(audio.mel_basis().astype(np.float64).sum(1) * np.sqrt(1e-9), 1e-5))
    np.testing.assert_allclose(z, np.repeat(expected[:, None], z.shape[1], 1), atol=1e-5)
    assert z.min() == pytest.approx(np.log(1e-5), abs=1e-5)
    t = np.arange(SR) / SR
    m = audio.log_mel((0.5 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32))
    band = int(np.median(m.argmax(axis=0)))
    assert band == int(audio.mel_basis()[:, round(2000 * audio.N_FFT / SR)].argmax())


@pytest.mark.parametrize("f", [90.0, 150.0, 240.0, 400.0])
def test_pitch_of_a_harmonic_tone(f):
    t = np.arange(SR) / SR
    x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6)).astype(np.float32) * 0.3
    f0, energy = audio.pitch_energy(x)
    voiced = f0[2:-2]
    assert (voiced > 0).mean() > 0.9
    assert np.median(voiced[voiced > 0]) == pytest.approx(f, rel=0.01)
    assert (energy > 1).all()


def test_unvoiced_noise_and_silence():
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    f0, _ = audio.pitch_energy(noise)
    assert (f0 > 0).mean() < 0.1
    f0, e = audio.pitch_energy(np.zeros(SR, np.float32))
    assert (f0 == 0).all()
    np.testing.assert_allclose(e, np.sqrt(513 * 1e-9), rtol=1e-3)


def test_pitch_energy_accepts_torch_and_rejects_batches():
    x = _speechlike(0.5)
    f0_np, e_np = audio.pitch_energy(x)
    f0_t, e_t = audio.pitch_energy(torch.from_numpy(x))
    np.testing.assert_array_equal(f0_np, f0_t)
    with pytest.raises(ValueError):
        audio.pitch_energy(np.zeros((2, 4096), np.float32))


# ---------------------------------------------------------------- text
def test_symbols():
    assert T.SYMBOLS[0] == "<pad>" and len(T.SYMBOLS) <= 96
    assert len(set(T.SYMBOLS)) == len(T.SYMBOLS)
    assert T.SYMBOLS[1:40] == T.PHONES and all(not p[-1].isdigit() for p in T.PHONES)
    for s in ["sil", "sp", "<unk>", ",", ".", "?", "!"]:
        assert s in T.SYMBOL_TO_ID


def test_text_to_ids_basic():
    assert T.text_to_phones("Hello world.") == ["sil", "hh", "ah", "l", "ow", "w", "er", "l", "d", "."]
    assert T.text_to_phones("Hi, you?!") == ["sil", "hh", "ay", ",", "y", "uw", "?"]
    assert T.text_to_phones("no end")[-1] == "sil"
    ids = T.text_to_ids("The quick brown fox; jumps!")
    assert all(isinstance(i, int) and 0 < i < len(T.SYMBOLS) for i in ids)
    assert T.ids_to_phones(ids)[-1] == "!" and "," in T.ids_to_phones(ids)
    assert T.text_to_ids("") == [T.SIL_ID, T.SIL_ID]


def test_numbers():
    assert T.number_to_words(0) == "zero"
    assert T.number_to_words(13) == "thirteen"
    assert T.number_to_words(105) == "one hundred five"
    assert T.number_to_words(1234567) == "one million two hundred thirty four thousand five hundred sixty seven"
    assert T.normalize("42 cats") == ["forty", "two", "cats"]
    assert T.normalize("3.5") == ["three", "point", "five"]
    assert T.normalize("the 21st") == ["the", "twenty", "first"]
    assert T.normalize("$5, 10%") == ["five", "dollars", ",", "ten", "percent"]
    assert T.normalize("1,000 km") == ["one", "thousand", "kilometers"]  # units after a number are read
    assert T.text_to_phones("7") == ["sil", "s", "eh", "v", "ah", "n", "sil"]


def test_oov_fallback():
    assert "zorblax" not in T._cmu()
    phones = T.text_to_phones("zorblax")[1:-1]
    assert phones == T.letter_to_sound("zorblax") == ["z", "ao", "r", "b", "l", "ae", "k", "s"]
    assert T.letter_to_sound("shipe") == ["sh", "ih", "p"]  # digraph + silent e
    assert T.letter_to_sound("cider")[0] == "s"  # soft c
    # out-of-vocabulary capitalised acronym is spelled
    assert T.text_to_phones("TTS")[1:-1] == ["t", "iy", "t", "iy", "eh", "s"]
    # every fallback phone is a real symbol
    rng = random.Random(0)
    for _ in range(200):
        w = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 12)))
        assert all(p in T.PHONES for p in T.letter_to_sound(w)), w


def test_unknown_characters():
    with pytest.raises(ValueError, match="'ж'"):
        T.text_to_ids("hello ж world")
    with pytest.raises(ValueError, match="U\\+1F600"):
        T.text_to_ids("smile \U0001F600")
    assert T.text_to_phones("hello ж world", errors="skip") == T.text_to_phones("hello world")
    assert T.text_to_phones("café") == T.text_to_phones("cafe")  # accents fold
    assert T.text_to_phones('"rock-and-roll" (live)') == T.text_to_phones("rock and roll live")


def test_never_crashes_on_random_ascii():
    rng = random.Random(1)
    for _ in range(300):
        s = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 30)))
        try:
            ids = T.text_to_ids(s)
        except ValueError as e:
            assert "unsupported character" in str(e)
            continue
        assert len(ids) >= 2 and all(0 < i < len(T.SYMBOLS) for i in ids)


def test_phones_to_ids():
    assert T.phones_to_ids(["HH", "AH0", "pau", "ax?", ","]) == [
        T.SYMBOL_TO_ID["hh"], T.SYMBOL_TO_ID["ah"], T.SIL_ID, T.SYMBOL_TO_ID["<unk>"], T.SYMBOL_TO_ID[","]]


# ---------------------------------------------------------------- committed calibration sets
sets = pytest.importorskip("calibration.sets")
_HAVE_DATA = (sets.DATA_DIR / "manifest.json").is_file()
needs_data = pytest.mark.skipif(not _HAVE_DATA, reason="calibration/data not generated (make corpus)")


@needs_data
def test_sets_load_and_are_consistent():
    from voxc.calibration import corpus

    for name in sets.SET_NAMES:
        utts = sets.load_set(name)
        assert utts and len(sets.set_hash(name)) == 64
        for u in utts:
            assert u.mel.dtype == np.float32 and u.mel.shape[0] == 80
            assert u.speaker in corpus.SPEAKERS and u.style in corpus.STYLES
            if u.aligned:
                assert u.durations.sum() == u.frames
                assert len(u.phoneme_ids) == len(u.durations) == len(u.pitch) == len(u.energy)
                assert u.phoneme_ids.dtype == np.int64 and u.phoneme_ids.max() < len(T.SYMBOLS)
    par = sets.load_set("parity")
    assert {u.speaker for u in par} >= set(corpus.HELD_OUT_SPEAKERS)
    u = next(u for u in par if u.wave is not None)
    assert len(u.wave) == u.frames * 256
    assert np.abs(audio.log_mel(u.wave) - u.mel).max() < 1e-4
    refs = sets.load_set("refs")
    assert {(r.speaker, r.style) for r in refs} == {(s, t) for s in corpus.SPEAKERS for t in corpus.STYLES}
    assert {r.frames for r in refs} == {94, 141, 188}
    assert len(refs) == len(corpus.SPEAKERS) * len(corpus.STYLES) * 3


@needs_data
def test_sets_detect_tampering(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sets.DATA_DIR, data)
    assert len(sets.load_set("refs", data)) > 0
    raw = bytearray((data / "refs.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (data / "refs.npz").write_bytes(bytes(raw))
    with pytest.raises(sets.CorruptSetError, match="calibration set 'refs' is corrupt: sha256 mismatch for refs.npz; "
                                                   "reinstall voxc"):
        sets.load_set("refs", data)
    (data / "parity.npz").unlink()
    with pytest.raises(sets.CorruptSetError, match="missing file parity.npz"):
        sets.load_set("parity", data)
    with pytest.raises(ValueError):
        sets.load_set("nope", data)
