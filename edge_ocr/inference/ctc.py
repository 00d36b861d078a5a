"""Greedy CTC decoding with per-line confidence."""

from __future__ import annotations

import numpy as np


def greedy_decode(probs: np.ndarray, charset: tuple[str, ...]) -> list[tuple[str, float]]:
    """Decode a (batch, time, classes) softmax output.

    Index 0 is the CTC blank; class k >= 1 is charset[k-1]. Repeats are merged, then blanks dropped.
    Confidence is the mean probability of the kept characters (0 for an empty line).
    """
    idx = probs.argmax(axis=2)
    prob = probs.max(axis=2)
    out: list[tuple[str, float]] = []
    for b in range(idx.shape[0]):
        seq = idx[b]
        keep = seq != 0
        keep[1:] &= seq[1:] != seq[:-1]
        chars = seq[keep]
        if chars.size == 0:
            out.append(("", 0.0))
            continue
        text = "".join(charset[c - 1] for c in chars)
        out.append((text, float(prob[b][keep].mean())))
    return out
