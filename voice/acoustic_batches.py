"""Padded training batches of the acoustic model and its teacher-forced forward pass and losses.

The frame mask comes from the family's own host step (models/voxc/flow.frame_mask), the one place
the glue between the acoustic encoder and the length regulator is written.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.models.voxc.flow import frame_mask
from voxc.voice.data import Split


def pitch_feature(f0_hz):
    """Per-phone pitch as the acoustic encoder sees it: log1p(F0 / 100), 0 for unvoiced phones."""
    return np.log1p(np.asarray(f0_hz, np.float32) / 100.0)


def energy_feature(energy):
    """Per-phone energy as the acoustic encoder sees it: log1p(energy)."""
    return np.log1p(np.asarray(energy, np.float32))


def acoustic_batch(split: Split, idx, spk_emb: np.ndarray, emo_emb: np.ndarray) -> dict:
    """Padded tensors for utterances idx with the given conditioning rows."""
    ph = [split.phones(int(i)) for i in idx]
    n_p = max(len(p["phoneme_ids"]) for p in ph)
    n_f = max(split.frames(int(i)) for i in idx)
    b = len(idx)
    out = {"phonemes": np.zeros((b, n_p), np.int64), "durations": np.zeros((b, n_p), np.int64),
           "pitch": np.zeros((b, n_p), np.float32), "energy": np.zeros((b, n_p), np.float32),
           "phone_mask": np.zeros((b, n_p), np.float32), "mel": np.zeros((b, 80, n_f), np.float32),
           "frame_mask": frame_mask([split.frames(int(i)) for i in idx], n_f)}
    for j, (i, p) in enumerate(zip(idx, ph)):
        n, f = len(p["phoneme_ids"]), split.frames(int(i))
        out["phonemes"][j, :n] = p["phoneme_ids"]
        out["durations"][j, :n] = p["durations"]
        out["pitch"][j, :n] = pitch_feature(p["pitch"])
        out["energy"][j, :n] = energy_feature(p["energy"])
        out["phone_mask"][j, :n] = 1
        out["mel"][j, :, :f] = split.mel(int(i))
        out["mel"][j, :, f:] = np.log(1e-5)
    t = {k: torch.from_numpy(v) for k, v in out.items()}
    t["speaker"] = torch.from_numpy(np.ascontiguousarray(spk_emb))
    t["emotion"] = torch.from_numpy(np.ascontiguousarray(emo_emb))
    return t


def acoustic_forward(enc: nn.Module, reg: nn.Module, dec: nn.Module, b: dict, teacher: bool = True) -> dict:
    """Encoder (teacher-forced pitch/energy), length regulator with ground-truth durations, decoder."""
    hidden, log_d, _, pitch, energy = enc(b["phonemes"], b["speaker"], b["emotion"],
                                          pitch_target=b["pitch"] if teacher else None,
                                          energy_target=b["energy"] if teacher else None)
    states = reg(hidden, b["durations"], b["frame_mask"])
    coarse = dec.to_mel(dec.decoder(states)).transpose(1, 2)
    mel = coarse + dec.postnet(coarse)
    return {"log_d": log_d, "pitch": pitch, "energy": energy, "coarse": coarse, "mel": mel}


def acoustic_losses(o: dict, b: dict) -> dict:
    pm, fm = b["phone_mask"], b["frame_mask"][:, None, :]
    def pmse(x, y):
        return (((x - y) ** 2) * pm).sum() / pm.sum()
    def fl1(x):
        return ((x - b["mel"]).abs() * fm).sum() / (fm.sum() * x.shape[1])
    return {"mel": fl1(o["mel"]), "coarse": fl1(o["coarse"]),
            "duration": pmse(o["log_d"], torch.log(b["durations"].float() + 1.0)),
            "pitch": pmse(o["pitch"], b["pitch"]), "energy": pmse(o["energy"], b["energy"])}
