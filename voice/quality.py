"""`voxc voice-report`: objective quality of the trained voice on held-out data -> artifacts/voice/quality.json.

* vocoder: copy synthesis (ground-truth mel -> waveform) scored by log-mel L1 (models.audio
  convention, float64) and multi-resolution STFT distance (voice.losses.mrstft) against the real
  waveform, next to the same scores for Griffin-Lim (32 iterations) from the same mels, where the
  linear magnitude comes from the pseudo-inverse of models.audio.mel_basis();
* acoustic: mel L1 against the ground truth with ground-truth durations (and predicted pitch and
  energy), duration error of the duration predictor;
* speaker_encoder: equal error rate over all same/different-speaker pairs of held-out utterances
  (unseen sentences of the training speakers plus the two held-out espeak-ng speakers);
* emotion_encoder: style classification accuracy.
"""
from __future__ import annotations

import numpy as np
import torch

from voxc.core import audio
from voxc.core.atomic import write_atomic


from voxc.voice.embeddings import eer, eer_from_scores, embed_utterances, style_accuracy  # noqa: F401


# ---------------------------------------------------------------- Griffin-Lim baseline

def _stft(x: np.ndarray) -> np.ndarray:
    """Complex STFT [bins, frames] of an already padded 1-D signal (models.audio framing)."""
    n_frames = (len(x) - audio.N_FFT) // audio.HOP + 1
    idx = np.arange(audio.N_FFT)[None, :] + audio.HOP * np.arange(n_frames)[:, None]
    return np.fft.rfft(x[idx] * audio.hann(), axis=-1).T


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of _stft (least-squares, window-sum normalised)."""
    frames = np.fft.irfft(spec.T, n=audio.N_FFT, axis=-1) * audio.hann()
    out, wsum = np.zeros(length), np.zeros(length)
    for t in range(frames.shape[0]):
        a = t * audio.HOP
        out[a:a + audio.N_FFT] += frames[t]
        wsum[a:a + audio.N_FFT] += audio.hann() ** 2
    return out / np.maximum(wsum, 1e-8)


def mel_to_linear(log_mel: np.ndarray) -> np.ndarray:
    """Linear magnitude [513, frames] from a log-mel via the pseudo-inverse of the mel basis (clipped >= 0)."""
    pinv = np.linalg.pinv(audio.mel_basis().astype(np.float64))
    return np.maximum(pinv @ np.exp(np.asarray(log_mel, np.float64)), 0.0)


def griffin_lim(log_mel: np.ndarray, iterations: int = 32, momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """Griffin-Lim phase reconstruction from a [80, frames] log-mel -> float32 wave of frames*256
    samples. ``momentum`` > 0 is the fast Griffin-Lim of Perraudin et al. 2013 (librosa's default
    0.99); 0 is the original algorithm. Random initial phase from ``seed``."""
    return griffin_lim_magnitude(mel_to_linear(log_mel), iterations, momentum, seed)


def analysis_spectrum(wave: np.ndarray, frames: int) -> np.ndarray:
    """Complex STFT [513, frames] of the first frames*256 samples in models.audio's framing."""
    x = np.asarray(wave[:frames * audio.HOP], np.float64)
    return _stft(np.pad(x, (audio.PAD, audio.PAD), mode="reflect"))


def resynthesize(spectrum: np.ndarray) -> np.ndarray:
    """Inverse of analysis_spectrum: [513, frames] complex -> float32 wave of frames*256 samples."""
    frames = spectrum.shape[1]
    wave = _istft(spectrum, frames * audio.HOP + 2 * audio.PAD)[audio.PAD:audio.PAD + frames * audio.HOP]
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def griffin_lim_magnitude(mag: np.ndarray, iterations: int = 32, momentum: float = 0.99, seed: int = 0) -> np.ndarray:
    """Griffin-Lim from a linear magnitude [513, frames] in models.audio's framing (see griffin_lim)."""
    frames = mag.shape[1]
    length = frames * audio.HOP + 2 * audio.PAD           # the padded signal models.audio frames
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    prev = np.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = _stft(_istft(mag * angles, length))
        angles = rebuilt - (momentum / (1 + momentum)) * prev if momentum else rebuilt
        angles = angles / np.maximum(np.abs(angles), 1e-16)
        prev = rebuilt
    return resynthesize(mag * angles)


def logmel_l1(wave_hat: np.ndarray, mel: np.ndarray) -> float:
    m = audio.log_mel(np.asarray(wave_hat, np.float64))
    n = min(m.shape[-1], mel.shape[-1])
    return float(np.abs(m[:, :n] - mel[:, :n]).mean())


def mrstft_distance(wave_hat: np.ndarray, wave: np.ndarray) -> float:
    from voxc.voice.losses import mrstft
    return float(mrstft(torch.from_numpy(np.asarray(wave_hat, np.float64))[None],
                        torch.from_numpy(np.asarray(wave, np.float64))[None]))


# ---------------------------------------------------------------- the report

def _mean(xs) -> float:
    return round(float(np.mean(xs)), 4)


def vocoder_metrics(voice, split, indices, gl_iterations: int = 32) -> dict:
    """Copy synthesis vs Griffin-Lim on the same ground-truth mels (means over utterances)."""
    rows: dict[str, list[float]] = {}
    for i in indices:
        mel, wave = split.mel(i), split.wave(i)
        with torch.no_grad():
            y = voice.modules["vocoder"](torch.from_numpy(np.ascontiguousarray(mel))[None])[0, 0].numpy()
        gl = griffin_lim(mel, gl_iterations, momentum=0.0)
        fgl = griffin_lim(mel, gl_iterations, momentum=0.99)
        true = analysis_spectrum(wave, mel.shape[1])
        oracles = {"oracle_true_magnitude_griffinlim_": griffin_lim_magnitude(np.abs(true), gl_iterations, 0.0),
                   "oracle_mel_magnitude_true_phase_": resynthesize(mel_to_linear(mel) * np.exp(1j * np.angle(true)))}
        for key, w in (("", y), ("griffinlim_", gl), ("fast_griffinlim_", fgl), *oracles.items()):
            rows.setdefault(key + "logmel_l1", []).append(logmel_l1(w, mel))
            rows.setdefault(key + "mrstft", []).append(mrstft_distance(w, wave))
    out = {k: _mean(v) for k, v in rows.items()}
    out["logmel_l1_vs_griffinlim"] = round(out["logmel_l1"] / out["griffinlim_logmel_l1"] - 1, 4)
    out["mrstft_vs_griffinlim"] = round(out["mrstft"] / out["griffinlim_mrstft"] - 1, 4)
    out["utterances"] = len(indices)
    out["griffinlim"] = (f"classic Griffin-Lim (momentum 0), {gl_iterations} iterations, random initial phase "
                         "(seed 0), linear magnitude = max(pinv(mel_basis) @ exp(log_mel), 0); fast_griffinlim_* "
                         "is the momentum-0.99 variant (librosa's default) for comparison")
    out["oracles"] = ("not vocoders, they read the recording: oracle_true_magnitude_griffinlim_* is the same "
                      "Griffin-Lim given the recording's own linear STFT magnitude instead of the mel's; "
                      "oracle_mel_magnitude_true_phase_* is the mel's least-squares magnitude with the "
                      "recording's own phase. They show where the information the bar needs sits")
    return out


def acoustic_metrics(voice, split, indices) -> dict:
    """Mel L1 with ground-truth durations (predicted pitch/energy, and teacher-forced for reference),
    duration error of the predictor. The speaker reference is another utterance of the same speaker."""
    from voxc.voice.acoustic_batches import acoustic_batch, acoustic_forward
    m = voice.modules
    spk_idx: dict[int, list[int]] = {}
    for i in range(len(split)):
        spk_idx.setdefault(split.speaker_id(i), []).append(i)
    rows = {k: [] for k in ("mel_l1", "mel_l1_teacher_forced", "duration_mae_frames", "duration_log_mse",
                            "total_length_rel_error")}
    for i in indices:
        others = [j for j in spk_idx[split.speaker_id(i)] if j != i and split.text(j) != split.text(i)]
        ref = others[0] if others else i
        with torch.no_grad():
            spk = voice.speaker_embedding(split.wave(ref))
            emo = voice.style_embedding(split.styles[split.style_id(i)])
            b = acoustic_batch(split, [i], spk.numpy(), emo.numpy())
            free = acoustic_forward(m["acoustic_encoder"], m["length_regulator"], m["acoustic_decoder"], b, teacher=False)
            forced = acoustic_forward(m["acoustic_encoder"], m["length_regulator"], m["acoustic_decoder"], b, teacher=True)
        gt = b["durations"][0].double()
        pred = torch.clamp(torch.round(torch.exp(free["log_d"][0].double()) - 1.0), min=1.0)
        rows["mel_l1"].append(float((free["mel"] - b["mel"]).abs().mean()))
        rows["mel_l1_teacher_forced"].append(float((forced["mel"] - b["mel"]).abs().mean()))
        rows["duration_mae_frames"].append(float((pred - gt).abs().mean()))
        rows["duration_log_mse"].append(float(((free["log_d"][0].double() - torch.log(gt + 1)) ** 2).mean()))
        rows["total_length_rel_error"].append(float(abs(pred.sum() - gt.sum()) / gt.sum()))
    out = {k: _mean(v) for k, v in rows.items()}
    out["utterances"] = len(indices)
    return out


def speaker_metrics(voice, split) -> dict:
    e = embed_utterances(voice.modules["speaker_encoder"], [split.mel(i) for i in range(len(split))])
    y = split.arrays["speaker_id"]
    held = [k for k, s in enumerate(split.speakers) if s in HELD_OUT_SPEAKERS]
    ho = np.isin(y, held)
    esp = np.array([split.speakers[k].startswith("espk") for k in y])
    return {"eer": round(eer(e, y), 4), "eer_held_out_speakers_only": round(eer(e[ho], y[ho]), 4),
            "eer_espeak_only": round(eer(e[esp], y[esp]), 4), "utterances": int(len(y)),
            "speakers": int(len(set(y.tolist()))), "held_out_speakers": [split.speakers[k] for k in held],
            "trials": "all unordered pairs, cosine of full-utterance d-vectors"}


def emotion_metrics(voice, split) -> dict:
    mels = [split.mel(i) for i in range(len(split))]
    styles, y = split.arrays["style_id"], split.arrays["speaker_id"]
    held = np.isin(y, [k for k, s in enumerate(split.speakers) if s in HELD_OUT_SPEAKERS])
    enc = voice.modules["emotion_encoder"]
    pred = enc.classifier(torch.from_numpy(embed_utterances(enc, mels))).argmax(-1).numpy()
    ok = pred == styles
    return {"accuracy": round(float(ok.mean()), 4), "accuracy_training_speakers": round(float(ok[~held].mean()), 4),
            "accuracy_held_out_speakers": round(float(ok[held].mean()), 4), "utterances": int(len(ok)),
            "classes": split.styles}


HELD_OUT_SPEAKERS = ("espk_lanc_m7", "espk_nyc_f5")


def report(corpus="artifacts/corpus", out="artifacts/voice/quality.json", checkpoints=None,
           max_vocoder_utts: int = 48, max_acoustic_utts: int = 60, threads: int = 1,
           asr_python: str | None = None) -> dict:
    """Compute every metric on the held-out parity split and write quality.json."""
    import json
    import time
    from pathlib import Path

    from voxc.voice.data import Split
    from voxc.voice.synth import Voice
    torch.set_num_threads(threads)
    t0 = time.time()
    voice = Voice(checkpoints)
    split = Split.load(corpus, "parity")
    # vocoder: an even spread over speakers/styles of the held-out split
    step = max(1, len(split) // max_vocoder_utts)
    voc_idx = list(range(0, len(split), step))[:max_vocoder_utts]
    aligned = [i for i in range(len(split)) if split.aligned(i)]
    ac_idx = aligned[:: max(1, len(aligned) // max_acoustic_utts)][:max_acoustic_utts]
    result = {
        "held_out_set": f"parity split of {corpus} ({len(split)} utterances: unseen sentences of the training "
                        f"speakers and the held-out speakers {', '.join(HELD_OUT_SPEAKERS)})",
        "vocoder": vocoder_metrics(voice, split, voc_idx),
        "acoustic": acoustic_metrics(voice, split, ac_idx),
        "speaker_encoder": speaker_metrics(voice, split),
        "emotion_encoder": emotion_metrics(voice, split),
    }
    from voxc.voice import intelligibility
    import sys
    asr_python = asr_python or sys.executable
    if intelligibility.asr_available(asr_python):
        result["intelligibility"] = intelligibility.evaluate(voice, split, Path(out).parent / "asr", asr_python,
                                                             speakers=("fest_slt", "fest_kal", "fest_ked"))
    else:
        result["intelligibility"] = {"skipped": f"pocketsphinx not importable by {asr_python}; "
                                                "pip install pocketsphinx (or pass --asr-python)"}
    v = result["vocoder"]
    result["bars"] = {
        "vocoder_logmel_l1_30pct_below_griffinlim": v["logmel_l1"] <= 0.7 * v["griffinlim_logmel_l1"],
        "vocoder_mrstft_30pct_below_griffinlim": v["mrstft"] <= 0.7 * v["griffinlim_mrstft"],
        "speaker_eer_at_most_10pct": result["speaker_encoder"]["eer"] <= 0.10}
    result["seconds"] = round(time.time() - t0, 1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(result, indent=2) + "\n")
    return result
