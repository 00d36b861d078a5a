"""Accuracy scoring for the bench and the accuracy tests: pure functions, no I/O, no models.

What is scored and how follows `../shared/eval/SOURCES.md`:

- Line sets: character error rate (CER = summed Levenshtein distance / summed GT length) and exact-line
  accuracy after normalisation. The SROIE transcripts are upper-case normalised, so scores fold case;
  "nows" removes all whitespace (the headline figure), "ws" keeps words apart (runs of whitespace
  collapse to one space), "nows_nfkc" also folds full-width forms (the synthetic Chinese set renders
  ：and : alike).
- Pages: each GT segment is matched against the predicted lines whose boxes overlap it; see
  `score_page` for the rule.

Levenshtein distance comes from rapidfuzz (C++) when it is installed (the `bench` extra) and from a
small pure-Python DP otherwise, so line scoring works everywhere. The page rule needs rapidfuzz's
`partial_ratio_alignment`: a hand-written stand-in would not reproduce the reference figures.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any


@cache
def _rapidfuzz() -> tuple[Any, Any]:
    """(fuzz, Levenshtein), or (None, None) without the bench extra. Imported at first use: the CLI's
    parser imports this module for `bench`'s options, and a daemon need not carry rapidfuzz (1.8 MB)."""
    try:
        from rapidfuzz import fuzz
        from rapidfuzz.distance import Levenshtein
    except ImportError:  # pragma: no cover - exercised only where the bench extra is absent
        return None, None
    return fuzz, Levenshtein

Point = tuple[float, float]
Box = Sequence[Sequence[float]]  # 4 (or more) points [x, y]

# Normalisation variants reported for line sets; "nows" is the headline figure SOURCES.md defines.
VARIANTS = ("nows", "ws", "nows_nfkc")
RECALL_MAX_CER = 0.1  # a GT line counts as recalled when its own CER is at most this (SOURCES.md)
_SPACE = re.compile(r"\s+")


def _levenshtein_dp(a: str, b: str) -> int:
    """Two-row Wagner-Fischer; O(len(a) * len(b)) but lines are short."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def levenshtein(a: str, b: str) -> int:
    """Unit-cost edit distance (insert, delete, substitute)."""
    _, lev = _rapidfuzz()
    if lev is not None:
        return int(lev.distance(a, b))
    return _levenshtein_dp(a, b)


def normalize(text: str, variant: str = "nows") -> str:
    """Fold case and whitespace the way the scores are defined.

    nows: case-folded, all whitespace removed. ws: case-folded, whitespace runs collapsed to one space
    and the ends stripped. nows_nfkc: NFKC first (full-width -> ASCII forms), then as nows.
    """
    if variant == "nows_nfkc":
        text = unicodedata.normalize("NFKC", text)
        variant = "nows"
    text = text.casefold()
    if variant == "nows":
        return _SPACE.sub("", text)
    if variant == "ws":
        return _SPACE.sub(" ", text).strip()
    raise ValueError(f"unknown normalisation {variant!r}; expected one of {VARIANTS}")


@dataclass(frozen=True)
class LineScores:
    """Line-set accuracy under one normalisation."""

    n: int
    exact: int  # lines read exactly right
    distance: int  # summed edit distance
    length: int  # summed GT length

    @property
    def accuracy(self) -> float:
        return self.exact / self.n if self.n else 0.0

    @property
    def cer(self) -> float:
        return self.distance / self.length if self.length else 0.0


def score_lines(gts: Sequence[str], preds: Sequence[str], variant: str = "nows") -> LineScores:
    """CER and exact-line accuracy of predictions against ground truths, paired by position."""
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground truths but {len(preds)} predictions")
    exact = distance = length = 0
    for gt, pred in zip(gts, preds, strict=True):
        g, p = normalize(gt, variant), normalize(pred, variant)
        d = levenshtein(g, p)
        exact += d == 0
        distance += d
        length += len(g)
    return LineScores(n=len(gts), exact=exact, distance=distance, length=length)


def line_cer(gt: str, pred: str, variant: str = "nows") -> float:
    """CER of one line; an empty GT scores 0 when the prediction is empty too, else 1."""
    g, p = normalize(gt, variant), normalize(pred, variant)
    if not g:
        return 0.0 if not p else 1.0
    return levenshtein(g, p) / len(g)


# --- pages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    """Axis-aligned bounding rectangle of a box; SOURCES.md matches on rectangles, not quads."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def of(cls, box: Box) -> Rect:
        xs = [float(p[0]) for p in box]
        ys = [float(p[1]) for p in box]
        return cls(min(xs), min(ys), max(xs), max(ys))

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def overlaps(gt: Rect, pred: Rect) -> bool:
    """SOURCES.md's candidate test: the rectangles overlap horizontally (by any amount) and vertically
    by at least half the smaller height.

    Read this way the rule reproduces the reference figures SOURCES.md's script gave for RapidOCR 1.4.4
    (CER 0.037, recall 0.874); also demanding half a height of horizontal overlap gives recall 0.871.
    """
    dx = min(gt.x1, pred.x1) - max(gt.x0, pred.x0)
    dy = min(gt.y1, pred.y1) - max(gt.y0, pred.y0)
    return dx > 0 and dy > 0 and dy >= 0.5 * min(gt.height, pred.height)


@dataclass(frozen=True)
class PageScores:
    """Page-matching totals; they add up over pages (micro average), hence counts, not rates."""

    lines: int  # GT lines scored (non-empty after normalisation)
    recalled: int  # GT lines with their own CER <= RECALL_MAX_CER
    distance: int
    length: int

    @property
    def cer(self) -> float:
        return self.distance / self.length if self.length else 0.0

    @property
    def recall(self) -> float:
        return self.recalled / self.lines if self.lines else 0.0

    def __add__(self, other: PageScores) -> PageScores:
        return PageScores(
            self.lines + other.lines,
            self.recalled + other.recalled,
            self.distance + other.distance,
            self.length + other.length,
        )


EMPTY_PAGE = PageScores(0, 0, 0, 0)


def best_substring(gt: str, text: str) -> str:
    """The part of `text` that rapidfuzz's partial_ratio_alignment aligns best with `gt`."""
    _fuzz, _ = _rapidfuzz()
    if _fuzz is None:
        from edge_ocr.errors import MissingExtraError

        raise MissingExtraError("page scoring (rapidfuzz's partial_ratio_alignment)", "bench", "rapidfuzz")
    if not gt or not text:
        return ""
    al = _fuzz.partial_ratio_alignment(gt, text)
    assert al is not None  # None only below a score_cutoff, and none is given
    # src is always gt and dest always text, whichever of the two rapidfuzz slid over the other.
    return text[al.dest_start : al.dest_end]


def match_line(gt_text: str, gt_box: Box, preds: Sequence[tuple[str, Box]]) -> tuple[int, int]:
    """(distance, GT length) for one GT line, whitespace removed and case folded.

    Candidates are the predictions whose rectangle overlaps the GT rectangle (see `overlaps`); their
    texts are joined left to right, so a GT segment split across predicted lines, or one that is only
    part of a wider predicted line (SROIE splits printed rows into item / qty / price), still matches.
    No candidate means the line costs its full length.
    """
    g = normalize(gt_text)
    rect = Rect.of(gt_box)
    cands = [(Rect.of(b), t) for t, b in preds if overlaps(rect, Rect.of(b))]
    cands.sort(key=lambda c: (c[0].x0, c[0].y0))
    joined = normalize("".join(t for _, t in cands))
    return levenshtein(g, best_substring(g, joined)), len(g)


def score_page(gt: Iterable[tuple[str, Box]], preds: Sequence[tuple[str, Box]]) -> PageScores:
    """Score one page's predicted lines against its GT segments (SOURCES.md's matching rule).

    Precision is not measured: extra predicted text costs nothing, as in the reference figures.
    """
    lines = recalled = distance = length = 0
    for text, box in gt:
        d, n = match_line(text, box, preds)
        if n == 0:
            continue  # an empty GT segment carries nothing to read
        lines += 1
        recalled += d / n <= RECALL_MAX_CER
        distance += d
        length += n
    return PageScores(lines, recalled, distance, length)
