"""Greedy CTC decoding, optionally constrained to a set of characters, with per-character confidences."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Decoded(NamedTuple):
    """One decoded line: the text, its mean character probability, and each character's probability."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...] = ()


def class_mask(charset: tuple[str, ...], allowed: str) -> np.ndarray:
    """A bool mask over the model's classes: the blank and the classes whose symbol is in `allowed`."""
    keep = set(allowed)
    return np.array([True] + [c in keep for c in charset], dtype=bool)


def masked(probs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The probabilities renormalized over the classes `mask` keeps (all when None)."""
    if mask is None:
        return probs
    probs = probs * mask  # broadcast over the leading axes
    return probs / np.maximum(probs.sum(axis=-1, keepdims=True), 1e-12)


def runs(best: np.ndarray) -> list[tuple[int, int, int]]:
    """(class, first frame, end frame) of each character one best path (a row of argmax classes)
    emits: repeats merged, then blanks dropped."""
    if best.size == 0:
        return []
    change = np.flatnonzero(best[1:] != best[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [best.size]))
    return [(int(best[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True) if best[s] != 0]


def greedy_decode(
    probs: np.ndarray, charset: tuple[str, ...], mask: np.ndarray | None = None
) -> list[Decoded]:
    """Decode a (batch, time, classes) softmax output.

    Index 0 is the CTC blank; class k >= 1 is charset[k-1]. Repeats are merged, then blanks dropped.
    With `mask`, classes outside it are removed *before* the best path is taken and the probabilities
    are renormalized over the allowed ones: a digits-only region whose glyph the model found most like
    "O" then reads the "0" it also considered, with the probability it has among digits (what the
    model would say had it been trained on digits alone), instead of losing the character afterwards.
    """
    probs = masked(probs, mask)
    idx = probs.argmax(axis=2)
    prob = np.take_along_axis(probs, idx[..., None], axis=2)[..., 0]
    out: list[Decoded] = []
    for b in range(idx.shape[0]):
        emitted = runs(idx[b])
        if not emitted:
            out.append(Decoded("", 0.0))
            continue
        text = "".join(charset[c - 1] for c, _, _ in emitted)
        per_char = tuple(float(prob[b, start]) for _, start, _ in emitted)
        out.append(Decoded(text, float(np.mean(per_char)), per_char))
    return out
