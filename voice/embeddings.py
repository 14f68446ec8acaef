"""Speaker and style embeddings of whole utterances, and the equal error rate that scores them
(used by training's evaluation and by the quality report)."""
from __future__ import annotations

import numpy as np
import torch


def eer(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate of cosine scoring over all unordered pairs (same label = target trial)."""
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    iu = np.triu_indices(len(e), k=1)
    scores = (e @ e.T)[iu]
    same = (labels[:, None] == labels[None, :])[iu]
    return eer_from_scores(scores[same], scores[~same])


def eer_from_scores(target: np.ndarray, impostor: np.ndarray) -> float:
    """The error rate where false acceptance (impostor >= t) equals false rejection (target < t),
    linearly interpolated between the two thresholds around the crossing."""
    target, impostor = np.sort(np.asarray(target, float)), np.sort(np.asarray(impostor, float))
    if len(target) == 0 or len(impostor) == 0:
        raise ValueError("EER needs both target and impostor trials")
    thresholds = np.unique(np.concatenate([target, impostor, [np.inf]]))
    frr = np.searchsorted(target, thresholds, side="left") / len(target)           # target < t
    far = 1.0 - np.searchsorted(impostor, thresholds, side="left") / len(impostor)  # impostor >= t
    d = far - frr                                            # decreasing from >= 0 to <= 0
    k = int(np.argmax(d <= 0))
    if k == 0 or d[k] == 0:
        return float((far[k] + frr[k]) / 2)
    t = d[k - 1] / (d[k - 1] - d[k])
    return float(far[k - 1] + t * (far[k] - far[k - 1]) + frr[k - 1] + t * (frr[k] - frr[k - 1])) / 2


@torch.no_grad()
def embed_utterances(module: torch.nn.Module, mels: list[np.ndarray]) -> np.ndarray:
    """Run an encoder (mel [1, 80, T] -> [1, D]) on each full utterance; [N, D] numpy."""
    module.eval()
    return np.concatenate([module(torch.from_numpy(np.ascontiguousarray(m))[None]).numpy() for m in mels])


@torch.no_grad()
def style_accuracy(module: torch.nn.Module, mels: list[np.ndarray], styles: np.ndarray) -> float:
    e = torch.from_numpy(embed_utterances(module, mels))
    pred = module.classifier(e).argmax(-1).numpy()
    return float(np.mean(pred == np.asarray(styles)))


