"""Counters in motion, read as their gears allow.

A mechanical counter's drum turns only while every drum to its right passes 9 -> 0. So while a drum
shows parts of two neighbouring digits a and a+1, every drum right of it is between 9 and 0, and only
two readings are true: `..a9` and `..(a+1)0` (`01339` or `01340`). Read drum by drum, a model can take
the upper digit from one drum and the lower from the next (`01349`, `01330`): a value the counter never
showed, wrong above its last digit, the one error a meter must not publish.

So a reading is decided between two hypotheses over the per-digit probabilities:
- still: every drum shows one digit (the greedy reading, the product of each digit's best probability);
- turning at drum k: drum k shows a or a+1 and every drum right of it 9 or 0, each drum's likelihood
  the sum of its two; weighted by `TURNING_PRIOR`, since a counter stands still most of the time.
When turning wins, the reading is the likelier of its two geared readings. A greedy reading that is one
of them already stays as it is. Displays never show half digits; a sharp one's digits carry one
probability each, so the still hypothesis wins there.

A drum read as a digit that is neither neighbour of its carry (`7839`/`7840` read `7859`) is the
model's own error: its likeliest digit is wrong, and no choice between hypotheses undoes that. Tried
and not kept: doubting a reading whose last drum gives both 9 and 0 a fifth or more while the drum
left of its 9s or 0s gives less than a share to its likeliest two neighbouring digits. On 12,000 fresh
drums at camera strength 0-0.7 (shipped model, INT8, past the confidence floor) it caught 3 / 5 / 11
of the 30 read wrong above the last digit at a share of 0.7 / 0.8 / 0.9, for 18 / 35 / 92 right
readings lost: drums read right mid-carry spread their probabilities as widely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The weight of "turning" against "still". Set on the meter model's held-back rendered counters and
# displays: lower misses crossed carries, higher starts to move readings of blurred still digits.
TURNING_PRIOR = 0.7


def geared(chars: Sequence[str], digits: Sequence[np.ndarray | None]) -> list[str]:
    """`chars` as decoded, with a crossed carry resolved. `digits[i]` is character i's probability
    over the digits 0-9 (summing to 1), None for a character that is not a digit (a point, a space)."""
    out = list(chars)
    pos = [i for i, d in enumerate(digits) if d is not None]
    dist = [d for d in digits if d is not None]
    if len(pos) < 2:
        return out
    best = [float(d.max()) for d in dist]
    wrap = [float(d[9] + d[0]) for d in dist]
    winner: tuple[float, int, int] | None = None  # (odds against still, drum, lower digit)
    for k in range(len(pos) - 2, -1, -1):
        d = dist[k]
        b = int(d.argmax())
        lo = max(((b - 1) % 10, b), key=lambda x: d[x] + d[(x + 1) % 10])
        # math.prod, not np.prod: these are a few Python floats, and np.prod's array costs 5 us a call,
        # two calls a drum, up to six decodes a crop
        turning = TURNING_PRIOR * float(d[lo] + d[(lo + 1) % 10]) * math.prod(wrap[k + 1 :])
        odds = turning / max(math.prod(best[k:]), 1e-12)
        if odds > 1.0 and (winner is None or odds > winner[0]):
            winner = (odds, k, lo)
    if winner is None:
        return out
    _, k, lo = winner
    hi = (lo + 1) % 10
    d = dist[k]
    nine = float(np.prod([x[9] for x in dist[k + 1 :]]))
    zero = float(np.prod([x[0] for x in dist[k + 1 :]]))
    upper = d[hi] * zero > d[lo] * nine
    out[pos[k]] = str(hi if upper else lo)
    for i in pos[k + 1 :]:
        out[i] = "0" if upper else "9"
    return out
