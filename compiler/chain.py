"""The host-side TTS chain, and chained parity that attributes audio drift to a stage.

Chain runs text -> phoneme ids -> speaker/emotion encoders -> acoustic encoder -> (host sums the
durations) -> length regulator -> acoustic decoder -> vocoder, with each graph behind any runner
(targets.runner.TorchRunner for PyTorch, or a backend runner for an artifact).

chain_parity compares, on held-out parity utterances, the all-PyTorch chain with the chain built
from every artifact and with chains where one stage at a time is swapped for its artifact. For the
waveform comparison the reference durations are forced so lengths line up; the unforced chain's
predicted durations are compared separately (exact-match rate, total frame-count drift).
"""
from __future__ import annotations

import numpy as np

from calibration.feeds import fit
from compiler import audio_metrics, metrics

STAGES = ("speaker_encoder", "emotion_encoder", "acoustic_encoder", "length_regulator", "acoustic_decoder",
          "vocoder")
AUDIO = ("snr_db", "snr_voiced_db", "mrstft", "logmel_l1", "mcd_db")


class Chain:
    """runners: stage name -> object with infer(dict) -> dict; cfg: the preset (dims, n_styles, emotion_mode)."""

    def __init__(self, runners: dict, cfg: dict):
        self.r, self.cfg = runners, cfg

    def embeddings(self, ref_mel: np.ndarray, style_id: int = 0) -> dict[str, np.ndarray]:
        lo, hi = self.cfg["dims"]["ref_frames"][0], self.cfg["dims"]["ref_frames"][3]
        mel = fit(ref_mel, int(np.clip(ref_mel.shape[-1], lo, hi)))[None]
        spk = self.r["speaker_encoder"].infer({"mel": mel})["speaker_embedding"]
        emo_in = ({"emotion_id": np.array([style_id % self.cfg["n_styles"]], np.int64)}
                  if self.cfg.get("emotion_mode") == "table" else {"mel": mel})
        return {"speaker_embedding": spk, "emotion_embedding": self.r["emotion_encoder"].infer(emo_in)["emotion_embedding"]}

    def encode(self, phonemes: np.ndarray, ref_mel: np.ndarray, style_id: int = 0) -> dict[str, np.ndarray]:
        return self.r["acoustic_encoder"].infer({"phonemes": phonemes[None].astype(np.int64),
                                                 **self.embeddings(ref_mel, style_id)})

    def frame_count(self, durations: np.ndarray) -> int:
        lo, hi = self.cfg["dims"]["frames"][0], self.cfg["dims"]["frames"][3]
        return int(np.clip(durations.sum(), lo, hi))          # the host sums the durations

    def synthesize(self, phonemes: np.ndarray, ref_mel: np.ndarray, style_id: int = 0,
                   durations: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One utterance; durations forces the frame timing (else the predicted durations are used)."""
        enc = self.encode(phonemes, ref_mel, style_id)
        predicted = enc["durations"][0]
        dur = (predicted if durations is None else durations).astype(np.int64)
        frames = self.frame_count(dur)
        mask = (np.arange(frames) < dur.sum()).astype(np.float32)[None]
        states = self.r["length_regulator"].infer({"hidden": enc["hidden"], "durations": dur[None],
                                                   "frame_mask": mask})["frame_states"]
        mel = self.r["acoustic_decoder"].infer({"frame_states": states})["mel"]
        wave = self.r["vocoder"].infer({"mel": mel})["waveform"]
        return {"waveform": wave, "mel": mel, "durations": predicted, "frames": frames}

    def speak(self, text: str, ref_mel: np.ndarray, style_id: int = 0) -> dict[str, np.ndarray]:
        from models.text import text_to_ids
        return self.synthesize(np.array(text_to_ids(text), np.int64), ref_mel, style_id)


def _utterances(cfg: dict, count: int):
    from calibration.sets import load_set
    hi = cfg["dims"]["phonemes"][3]
    utts = [u for u in load_set("parity") if u.aligned and u.phoneme_ids.size <= hi
            and u.durations.sum() <= cfg["dims"]["frames"][3]]
    step = max(1, len(utts) // max(count, 1))
    return utts[::step][:count]


def chain_parity(reference: dict, artifacts: dict, cfg: dict, budget: dict, count: int = 3,
                 label: str = "") -> dict:
    """Rows per configuration ('all artifacts', 'only <stage>'), each the worst over `count` held-out
    utterances; `budget` is a waveform budget (spec.BUDGETS[precision]["waveform"]) applied to the
    audio metrics it names, and durations are judged with `budget_durations` when given."""
    configs = {"all artifacts": dict(artifacts)}
    for s in STAGES:
        if s in artifacts:
            configs[f"only {s}"] = {**reference, s: artifacts[s]}
    ref_chain = Chain(reference, cfg)
    utts = _utterances(cfg, count)
    refs = [(ref_chain.synthesize(u.phoneme_ids, u.mel, u.style_id, u.durations),
             ref_chain.encode(u.phoneme_ids, u.mel, u.style_id)["durations"][0]) for u in utts]
    rows = []
    for name, runners in configs.items():
        chain = Chain({**reference, **runners}, cfg)
        worst: dict[str, float] = {}
        for u, (forced_ref, free_ref) in zip(utts, refs):
            forced = chain.synthesize(u.phoneme_ids, u.mel, u.style_id, u.durations)
            free = chain.encode(u.phoneme_ids, u.mel, u.style_id)["durations"][0]   # unforced: predicted timing
            vals = {"snr_db": metrics.snr_db(forced_ref["waveform"], forced["waveform"]),
                    **audio_metrics.waveform_metrics(forced_ref["waveform"], forced["waveform"]),
                    **metrics.durations(free_ref, free)}
            ref_frames = chain.frame_count(free_ref)
            vals["frame_drift"] = abs(chain.frame_count(free) - ref_frames) / max(ref_frames, 1)
            for k, v in vals.items():
                if k not in worst or (v > worst[k] if k in metrics.LOWER_IS_BETTER else v < worst[k]):
                    worst[k] = float(v)
        failed = [k for k, tol in budget.items() if k in worst and not metrics.passes(k, worst[k], tol)]
        rows.append({"config": name, **worst, "within_budget": not failed, "over_budget": failed})
    return {"runtime": label, "utterances": [u.utt_id for u in utts], "budget": budget, "rows": rows,
            "note": "waveform metrics with reference durations forced; exact_match and frame_drift from the "
                    "unforced chain (predicted durations)"}


def chain_markdown(chains: dict) -> list[str]:
    """parity.md section: one table per runtime, rows 'all artifacts' then each stage swapped alone."""
    lines = ["", "## Chained parity (text -> waveform, against the all-PyTorch chain)", "",
             "The chain gate judges each `only <stage>` row by that stage's own precision budget -- for stages "
             "upstream of the vocoder its spectral metrics (mrstft, logmel_l1, mcd_db) and durations, since a "
             "phase-predicting vocoder turns any mel change into a different waveform -- and a stage over it "
             "falls back to its fallback precision. The budget column applies the loosest precision's whole "
             "waveform budget to every row and is for reading only.", ""]
    for d in chains.get("demotions", []):
        lines.append(f"- chain gate: {d['model']} on {d['runtime']}: {d['reason']}; fell back to {d['to']}")
    if chains.get("demotions"):
        lines.append("")
    for runtime, c in chains.get("runtimes", {}).items():
        lines += [f"### {runtime} (utterances {', '.join(c['utterances'])}; {c['note']})", "",
                  "| chain | " + " | ".join(AUDIO) + " | exact_match | frame_drift | budget |",
                  "|---|" + "---|" * (len(AUDIO) + 3)]
        for r in c["rows"]:
            vals = " | ".join(f"{r.get(k, float('nan')):.4g}" for k in AUDIO + ("exact_match", "frame_drift"))
            verdict = "within" if r["within_budget"] else "over: " + ", ".join(r["over_budget"])
            lines.append(f"| {r['config']} | {vals} | {verdict} |")
        lines.append("")
    return lines
