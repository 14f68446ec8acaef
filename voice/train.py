"""`voxc train`: train the models of a preset on the corpus, on the CPU, reproducibly from a seed.

Each model trains in its own resumable loop: every ``--ckpt-every`` steps the modules, the
optimiser, the step and the elapsed wall time go to ``artifacts/train/<model>/state.pt``
(written atomically); a restarted run continues from there. Batches are drawn from a numpy
generator seeded with ``(seed, step)``, so a resumed run sees the same batches as an
uninterrupted one. When a loop ends (``--steps`` reached or ``--minutes`` of wall time spent)
the exported module's weights go to ``artifacts/train/<model>/<model>.safetensors`` (training-only
heads dropped); ``voxc train --install`` copies them to voice/weights/ with a model card.

Order matters: the acoustic model conditions on the trained speaker and emotion encoders, so
train those first (``voxc train speaker_encoder emotion_encoder acoustic``); the vocoder only
needs the corpus and can train in parallel.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voxc.core.atomic import atomic_path, write_atomic
from voxc.core.errors import VoxcError
from voxc.models.family import init_module
from voxc.models.weights import load_into, save_safetensors
from voxc.voice import losses
from voxc.voice.acoustic_batches import (acoustic_batch, acoustic_forward, acoustic_losses,  # noqa: F401
                                          energy_feature, pitch_feature)
from voxc.voice.data import DEFAULT_CORPUS, STYLES, Split  # noqa: F401
from voxc.voice.weights import FAMILY

TRAIN_DIR = Path("artifacts/train")
TRAINABLE = tuple(FAMILY.training)   # training loops, in order

# Defaults for the light preset on one CPU thread (step counts are caps; --minutes is the budget).
DEFAULTS = {
    "vocoder": {"steps": 9000, "lr": 8e-4, "batch": 16, "segment_frames": 32, "minutes": 50.0},
    "speaker_encoder": {"steps": 500, "lr": 1e-3, "speakers_per_batch": 9, "utts_per_speaker": 6,
                        "ref_frames": 120, "minutes": 10.0},
    "emotion_encoder": {"steps": 600, "lr": 1e-3, "batch": 24, "ref_frames": 120, "minutes": 4.0},
    "acoustic": {"steps": 1100, "lr": 1e-3, "batch": 12, "minutes": 38.0},
}


def _log(out_dir: Path, msg: str) -> None:
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    with open(out_dir / "log.txt", "a") as f:
        f.write(line + "\n")


def _cosine_lr(base: float, step: int, total: int) -> float:
    warmup = min(200, total // 10)
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


class Loop:
    """A resumable training loop over named modules with one AdamW optimiser."""

    def __init__(self, name: str, modules: dict[str, nn.Module], hp: dict, out_dir: Path, seed: int):
        self.name, self.modules, self.hp, self.seed = name, modules, hp, seed
        self.out_dir = out_dir / name
        self.out_dir.mkdir(parents=True, exist_ok=True)
        params = [p for m in modules.values() for p in m.parameters()]
        self.opt = torch.optim.AdamW(params, lr=hp["lr"], betas=(0.8, 0.99), weight_decay=0.0)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.state_path = self.out_dir / "state.pt"
        if self.state_path.is_file():
            st = torch.load(self.state_path, map_location="cpu", weights_only=True)
            for k, m in modules.items():
                m.load_state_dict(st["modules"][k])
            self.opt.load_state_dict(st["opt"])
            self.step, self.elapsed = int(st["step"]), float(st["elapsed"])
            self.history = json.loads(st["history"])
            _log(self.out_dir, f"resumed {name} at step {self.step} ({self.elapsed / 60:.1f} min)")

    def save(self) -> None:
        with atomic_path(self.state_path) as tmp:
            torch.save({"modules": {k: m.state_dict() for k, m in self.modules.items()},
                        "opt": self.opt.state_dict(), "step": self.step, "elapsed": self.elapsed,
                        "history": json.dumps(self.history), "hp": json.dumps(self.hp)}, tmp)

    def run(self, step_fn, ckpt_every: int = 200, log_every: int = 50, eval_fn=None) -> None:
        total, budget = self.hp["steps"], self.hp["minutes"] * 60.0
        for m in self.modules.values():
            m.train()
        acc: dict[str, list[float]] = {}
        t_last = time.time()
        while self.step < total and self.elapsed < budget:
            lr = _cosine_lr(self.hp["lr"], self.step, total)
            for g in self.opt.param_groups:
                g["lr"] = lr
            rng = np.random.default_rng([self.seed, self.step])
            loss, parts = step_fn(rng)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([p for m in self.modules.values() for p in m.parameters()], 5.0)
            self.opt.step()
            self.step += 1
            now = time.time()
            self.elapsed += now - t_last
            t_last = now
            for k, v in parts.items():
                acc.setdefault(k, []).append(float(v))
            if self.step % log_every == 0:
                means = {k: round(float(np.mean(v)), 5) for k, v in acc.items()}
                acc = {}
                rec = {"step": self.step, "min": round(self.elapsed / 60, 2), "lr": lr, **means}
                if eval_fn is not None and self.step % (log_every * 4) == 0:
                    for m in self.modules.values():
                        m.eval()
                    with torch.no_grad():
                        rec.update(eval_fn())
                    for m in self.modules.values():
                        m.train()
                    t_last = time.time()  # evaluation time is not training time
                self.history.append(rec)
                _log(self.out_dir, json.dumps(rec))
            if self.step % ckpt_every == 0:
                self.save()
        self.save()
        for m in self.modules.values():
            m.eval()
        _log(self.out_dir, f"done {self.name}: step {self.step}, {self.elapsed / 60:.1f} min")


# ---------------------------------------------------------------- vocoder

def train_vocoder(cfg: dict, corpus: Path, out_dir: Path, hp: dict, seed: int) -> Loop:
    train, val = Split.load(corpus, "train"), Split.load(corpus, "validation")
    gen = init_module("vocoder", cfg)
    if hp.get("init"):                                   # fine-tuning from earlier weights
        load_into(gen, Path(hp["init"]), "vocoder")
    loop = Loop("vocoder", {"generator": gen}, hp, out_dir, seed)
    seg = hp["segment_frames"]
    hop = cfg["hop"]
    frames = np.array([train.frames(i) for i in range(len(train))])
    weights = np.maximum(frames - seg, 1) / np.maximum(frames - seg, 1).sum()

    def batch(rng, split, n, w):
        mels, waves = [], []
        for i in rng.choice(len(split), size=n, p=w):
            f = split.frames(int(i))
            a = int(rng.integers(0, max(1, f - seg)))
            mels.append(split.mel(int(i))[:, a:a + seg])
            waves.append(split.wave(int(i))[a * hop:(a + seg) * hop])
        return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(waves))

    def step(rng):
        mel, wave = batch(rng, train, hp["batch"], weights)
        y = gen(mel).squeeze(1)
        l_mel, l_stft = losses.mel_l1(y, mel), losses.mrstft(y, wave)
        return l_mel + l_stft, {"mel_l1": l_mel.item(), "mrstft": l_stft.item()}

    vframes = np.array([val.frames(i) for i in range(len(val))])
    vw = np.maximum(vframes - seg, 1) / np.maximum(vframes - seg, 1).sum()
    vmel, vwave = batch(np.random.default_rng(seed + 7), val, 16, vw)

    def evaluate():
        y = gen(vmel).squeeze(1)
        return {"val_mel_l1": round(losses.mel_l1(y, vmel).item(), 5),
                "val_mrstft": round(losses.mrstft(y, vwave).item(), 5)}

    loop.run(step, ckpt_every=200, log_every=50, eval_fn=evaluate)
    save_safetensors(gen, loop.out_dir / "vocoder.safetensors")
    return loop


# ---------------------------------------------------------------- speaker encoder (GE2E)

def _by_key(split: Split, key) -> dict:
    out: dict = {}
    for i in range(len(split)):
        out.setdefault(key(i), []).append(i)
    return out


def _crop(rng, mel: np.ndarray, frames: int) -> np.ndarray:
    if mel.shape[1] <= frames:  # short utterance: repeat-pad (edge) to the crop length
        return np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), mode="wrap")
    a = int(rng.integers(0, mel.shape[1] - frames + 1))
    return mel[:, a:a + frames]


def ge2e_loss(emb: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GE2E softmax loss (Wan et al. 2018) for emb [N speakers, M utterances, D] (unit rows)."""
    n, m, _ = emb.shape
    centroids = emb.mean(1)                                             # [N, D]
    excl = (emb.sum(1, keepdim=True) - emb) / (m - 1)                   # [N, M, D] leave-one-out
    sim = torch.einsum("nmd,kd->nmk", emb, nn.functional.normalize(centroids, dim=-1))
    own = nn.functional.cosine_similarity(emb, excl, dim=-1)            # [N, M]
    eye = torch.eye(n, dtype=torch.bool)[:, None, :].expand(n, m, n)
    sim = torch.where(eye, own[..., None].expand(n, m, n), sim)
    logits = w * sim + b
    target = torch.arange(n)[:, None].expand(n, m).reshape(-1)
    return nn.functional.cross_entropy(logits.reshape(n * m, n), target)


def _warp_mel(mel: np.ndarray, alpha: float) -> np.ndarray:
    """Stretch the mel axis by alpha (a vocal-tract-length-like change): a new pseudo speaker."""
    n = mel.shape[0]
    src = np.clip(np.arange(n) / alpha, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (src - lo)[:, None]
    return mel[lo] * (1 - frac) + mel[hi] * frac


def train_speaker_encoder(cfg: dict, corpus: Path, out_dir: Path, hp: dict, seed: int) -> Loop:
    train, val = Split.load(corpus, "train"), Split.load(corpus, "validation")
    enc = init_module("speaker_encoder", cfg)
    scale = nn.Parameter(torch.tensor(10.0))
    bias = nn.Parameter(torch.tensor(-5.0))
    head = nn.ParameterDict({"w": scale, "b": bias})
    loop = Loop("speaker_encoder", {"encoder": enc, "ge2e": head}, hp, out_dir, seed)
    by_spk = _by_key(train, train.speaker_id)
    spks = sorted(by_spk)
    n_spk, m_utt = hp["speakers_per_batch"], hp["utts_per_speaker"]
    warps = hp.get("warps", (0.88, 1.0, 1.12))

    def step(rng):
        frames = int(rng.integers(hp["ref_frames"] // 2, hp["ref_frames"] + 1))
        # pseudo speakers: (speaker, mel-axis warp); warped copies count as other speakers
        pool = [(s, a) for s in spks for a in warps]
        pick = rng.choice(len(pool), size=n_spk, replace=False)
        mels = []
        for j in pick:
            s, a = pool[int(j)]
            for i in rng.choice(by_spk[s], size=m_utt, replace=False):
                mel = _crop(rng, train.mel(int(i)), frames)
                mels.append(mel if a == 1.0 else _warp_mel(mel, a))
        x = torch.from_numpy(np.stack(mels).astype(np.float32))
        emb = enc(x).reshape(n_spk, m_utt, -1)
        loss = ge2e_loss(emb, torch.clamp(scale, min=1e-6), bias)
        return loss, {"ge2e": loss.item()}

    def evaluate():
        from voxc.voice.embeddings import eer, embed_utterances
        e = embed_utterances(enc, [val.mel(i) for i in range(len(val))])
        return {"val_eer": round(eer(e, val.arrays["speaker_id"]), 4)}

    loop.run(step, ckpt_every=100, log_every=25, eval_fn=evaluate)
    save_safetensors(enc, loop.out_dir / "speaker_encoder.safetensors")
    return loop


# ---------------------------------------------------------------- emotion / style encoder

def train_emotion_encoder(cfg: dict, corpus: Path, out_dir: Path, hp: dict, seed: int) -> Loop:
    train, val = Split.load(corpus, "train"), Split.load(corpus, "validation")
    enc = init_module("emotion_encoder", cfg)
    loop = Loop("emotion_encoder", {"encoder": enc}, hp, out_dir, seed)

    def step(rng):
        frames = int(rng.integers(hp["ref_frames"] // 2, hp["ref_frames"] + 1))
        idx = rng.choice(len(train), size=hp["batch"], replace=False)
        x = torch.from_numpy(np.stack([_crop(rng, train.mel(int(i)), frames) for i in idx]))
        y = torch.tensor([train.style_id(int(i)) for i in idx])
        logits = enc.classifier(enc(x))
        loss = nn.functional.cross_entropy(logits, y)
        return loss, {"ce": loss.item(), "acc": (logits.argmax(-1) == y).float().mean().item()}

    def evaluate():
        from voxc.voice.embeddings import style_accuracy
        return {"val_acc": round(style_accuracy(enc, [val.mel(i) for i in range(len(val))],
                                                val.arrays["style_id"]), 4)}

    loop.run(step, ckpt_every=100, log_every=25, eval_fn=evaluate)
    save_safetensors(enc, loop.out_dir / "emotion_encoder.safetensors")
    return loop


# ---------------------------------------------------------------- acoustic model

def _load_trained(name: str, cfg: dict, out: Path) -> nn.Module:
    """A trained encoder: this run's artifacts/train/<preset>/<name>/, else the committed voice weights."""
    from voxc.voice.weights import weight_path
    module = init_module(name, cfg)
    path = out / name / f"{name}.safetensors"
    load_into(module, path if path.is_file() else weight_path(name), name)
    return module.eval()


def conditioning(cfg: dict, split: Split, out: Path) -> dict:
    """Speaker d-vectors and style embeddings of every utterance of a split (full-length mels)."""
    from voxc.voice.embeddings import embed_utterances
    mels = [split.mel(i) for i in range(len(split))]
    spk = embed_utterances(_load_trained("speaker_encoder", cfg, out), mels)
    emo = embed_utterances(_load_trained("emotion_encoder", cfg, out), mels)
    return {"speaker": spk.astype(np.float32), "emotion": emo.astype(np.float32)}


def style_centroids(split: Split, emo: np.ndarray) -> np.ndarray:
    """Mean style embedding per style class [n_styles, E] over a split (what --style NAME uses)."""
    styles = split.arrays["style_id"]
    return np.stack([emo[styles == s].mean(0) for s in range(len(split.styles))]).astype(np.float32)


def train_acoustic(cfg: dict, corpus: Path, out_dir: Path, hp: dict, seed: int) -> Loop:
    train, val = Split.load(corpus, "train"), Split.load(corpus, "validation")
    enc, reg, dec = (init_module(n, cfg) for n in ("acoustic_encoder", "length_regulator", "acoustic_decoder"))
    loop = Loop("acoustic", {"encoder": enc, "decoder": dec}, hp, out_dir, seed)
    cond = conditioning(cfg, train, out_dir)
    centroids = style_centroids(train, cond["emotion"])
    with atomic_path(loop.out_dir / "style_centroids.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, centroids)
    aligned = np.array([i for i in range(len(train)) if train.aligned(i)])
    order = aligned[np.argsort([train.frames(int(i)) for i in aligned], kind="stable")]
    by_spk = _by_key(train, train.speaker_id)
    by_spk_style = _by_key(train, lambda i: (train.speaker_id(i), train.style_id(i)))
    bsz = hp["batch"]

    def pick(rng):
        a = int(rng.integers(0, len(order) - bsz + 1))           # a length bucket: little padding
        idx = order[a:a + bsz]
        spk_ref = [int(rng.choice(by_spk[train.speaker_id(int(i))])) for i in idx]
        emo = []
        for i in idx:
            if rng.random() < 0.5:
                emo.append(centroids[train.style_id(int(i))])
            else:
                r = int(rng.choice(by_spk_style[(train.speaker_id(int(i)), train.style_id(int(i)))]))
                emo.append(cond["emotion"][r])
        return idx, cond["speaker"][spk_ref], np.stack(emo)

    def step(rng):
        idx, spk, emo = pick(rng)
        b = acoustic_batch(train, idx, spk, emo)
        parts = acoustic_losses(acoustic_forward(enc, reg, dec, b), b)
        loss = parts["mel"] + parts["coarse"] + parts["duration"] + parts["pitch"] + parts["energy"]
        return loss, {k: v.item() for k, v in parts.items()}

    vcond = conditioning(cfg, val, out_dir)
    vidx = [i for i in range(len(val)) if val.aligned(i)][:24]

    def evaluate():
        tot: dict[str, float] = {}
        for i in vidx:
            b = acoustic_batch(val, [i], vcond["speaker"][[i]], centroids[[val.style_id(i)]])
            for k, v in acoustic_losses(acoustic_forward(enc, reg, dec, b, teacher=False), b).items():
                tot[k] = tot.get(k, 0.0) + v.item() / len(vidx)
        return {f"val_{k}": round(v, 4) for k, v in tot.items()}

    loop.run(step, ckpt_every=50, log_every=50, eval_fn=evaluate)
    save_safetensors(enc, loop.out_dir / "acoustic_encoder.safetensors")
    save_safetensors(dec, loop.out_dir / "acoustic_decoder.safetensors")
    return loop


TRAINERS = {"acoustic": train_acoustic, "vocoder": train_vocoder, "speaker_encoder": train_speaker_encoder,
            "emotion_encoder": train_emotion_encoder}


def train(models: list[str], preset_name: str = "light", corpus: str | Path = DEFAULT_CORPUS,
          out_dir: str | Path = TRAIN_DIR, seed: int | None = None, threads: int = 1,
          overrides: dict | None = None) -> None:
    cfg = FAMILY.preset(preset_name)
    seed = cfg["seed"] if seed is None else seed
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out_dir) / preset_name
    for name in models:
        if name not in TRAINERS:
            raise VoxcError(f"unknown model to train '{name}': choose from {', '.join(TRAINERS)}")
        hp = {**DEFAULTS[name], **{k: v for k, v in (overrides or {}).items() if v is not None}}
        TRAINERS[name](cfg, Path(corpus), out, hp, seed)


def install(preset_name: str = "light", out_dir: str | Path = TRAIN_DIR, weights_dir: str | Path | None = None,
            loops: list[str] | None = None) -> dict:
    """Copy a finished run's exported weights (and the style centroids) to voice/weights/ and write
    training.json (steps, wall time, last logged losses per model) next to them. `loops` (e.g.
    ["vocoder"]) installs only those training loops and keeps the other models' files and entries."""
    import shutil

    from safetensors.torch import save_file

    from voxc.voice import weights as W
    from voxc.voice.weights import TRAINED_MODELS
    from voxc.core.hashing import sha256_file as sha256
    WEIGHTS_DIR = Path(weights_dir) if weights_dir else W.WEIGHTS_DIR
    def weight_path(m):
        return WEIGHTS_DIR / W.weight_path(m).name
    def style_centroids_path():
        return WEIGHTS_DIR / W.style_centroids_path().name
    run = Path(out_dir) / preset_name
    sources = {g: loop for loop, graphs in FAMILY.training.items() for g in graphs}
    chosen = sorted(set(sources.values()) if loops is None else set(loops))
    unknown = set(chosen) - set(sources.values())
    if unknown:
        raise VoxcError(f"unknown training loop(s) {', '.join(sorted(unknown))}: choose from "
                        f"{', '.join(sorted(set(sources.values())))}")
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    old = WEIGHTS_DIR / "training.json"
    summary: dict = json.loads(old.read_text()) if loops is not None and old.is_file() else {"preset": preset_name}
    summary.setdefault("models", {})
    for model in TRAINED_MODELS:
        if sources[model] not in chosen:
            continue
        src = run / sources[model] / f"{model}.safetensors"
        if not src.is_file():
            raise VoxcError(f"{src} not found: train {sources[model]} first (voxc train {sources[model]})")
        with atomic_path(weight_path(model)) as tmp:
            shutil.copyfile(src, tmp)
    if "acoustic" in chosen:
        centroids = np.load(run / "acoustic" / "style_centroids.npy")
        with atomic_path(style_centroids_path()) as tmp:
            save_file({"centroids": torch.from_numpy(centroids)}, str(tmp), metadata={"styles": ",".join(STYLES)})
    for loop in chosen:
        st = torch.load(run / loop / "state.pt", map_location="cpu", weights_only=True)
        history = json.loads(st["history"])
        summary["models"][loop] = {"steps": int(st["step"]), "wall_minutes": round(float(st["elapsed"]) / 60, 1),
                                   "hyperparameters": json.loads(st["hp"]) if "hp" in st else DEFAULTS[loop],
                                   "first_log": history[0] if history else None,
                                   "last_log": history[-1] if history else None,
                                   "last_eval": next((h for h in reversed(history) if any(k.startswith("val_") for k in h)), None)}
    summary["files"] = {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
                        for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}
    write_atomic(WEIGHTS_DIR / "training.json", json.dumps(summary, indent=1) + "\n")
    return summary
