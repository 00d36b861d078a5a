"""Frozen values passed between the stages: image -> text boxes -> recognized lines -> result.

Stages never mutate what they receive; each returns one of these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


def low_confidence(confidence: float, weakest: float, floor: float) -> str | None:
    """Why a reading is too unsure for `floor` (a region's `min_confidence`): its mean or its weakest
    character probability is below it; None when it is sure enough."""
    if min(confidence, weakest) >= floor:
        return None
    return f"character confidence {weakest:.2f} (mean {confidence:.2f}) is below {floor:g}"


@dataclass(frozen=True)
class TextBox:
    """A detected text line: 4 corners (clockwise from top-left) in image pixels, and the DB score."""

    points: Quad
    score: float

    def as_array(self) -> np.ndarray:
        return np.asarray(self.points, dtype=np.float32)


@dataclass(frozen=True)
class TextLine:
    """One recognized line: text, confidence (mean of the kept CTC character probabilities), box."""

    text: str
    confidence: float
    box: Quad
    # Each character's probability (the weakest one tells more than the mean for a meter's digits).
    char_confidences: tuple[float, ...] = ()

    @property
    def weakest(self) -> float:
        """The least sure character's probability (the mean where characters were not kept)."""
        return min(self.char_confidences) if self.char_confidences else self.confidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "box": [[round(x, 1), round(y, 1)] for x, y in self.box],
        }


@dataclass(frozen=True)
class Rejected:
    """A line that was read but is not given as text, because a camera region would reject it (`reason`)."""

    line: TextLine
    reason: str  # low_confidence, as a region's RegionValue.reason
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.line.to_dict(), "weakest": round(self.line.weakest, 4), "reason": self.reason,
                "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class Orientation:
    """A page's turn as the orientation model named it (edge_ocr.inference.orientation)."""

    degrees: int  # the verdict: the page is turned this much clockwise (0, 90, 180, 270)
    confidence: float
    turned: bool  # whether the engine read it turned back (the verdict was confident enough)

    def to_dict(self) -> dict[str, Any]:
        return {"degrees": self.degrees, "confidence": round(self.confidence, 4), "turned": self.turned}


@dataclass(frozen=True)
class OcrResult:
    """What the engine returns for one image: the lines in reading order and the stage timings."""

    lines: tuple[TextLine, ...]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    orientation: Orientation | None = None  # pages only: None when the page was not classified
    rejected: tuple[Rejected, ...] = ()  # read, but below the caller's floor: not in `lines` or `text`

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def sure(self, floor: float) -> OcrResult:
        """This result with every line whose mean or weakest character probability is below `floor`
        moved to `rejected`: the rule of a region's `min_confidence` (`region_values.Region.is_sure`),
        so that a one-shot read gives what a camera region would publish, and says what it rejected."""
        kept: list[TextLine] = []
        held: list[Rejected] = []
        for ln in self.lines:
            why = low_confidence(ln.confidence, ln.weakest, floor)
            if why is None:
                kept.append(ln)
            else:
                held.append(Rejected(ln, "low_confidence", why))
        return replace(self, lines=tuple(kept), rejected=self.rejected + tuple(held))

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "lines": [line.to_dict() for line in self.lines],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            **({"orientation": self.orientation.to_dict()} if self.orientation is not None else {}),
            **({"rejected": [r.to_dict() for r in self.rejected]} if self.rejected else {}),
        }
