"""Camera regions and what is read from them, as values: `Region` (a named box or polygon and its
rules), `Reading`, `RegionValue` (a value to report, valid or rejected), `FrameOutcome`; the crop
signatures of change detection; regions from the config. No state: `edge_ocr.regions` tracks them over
frames, `edge_ocr.evidence` draws rejected ones."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from edge_ocr.alignment import Alignment
from edge_ocr.plausibility import NumericRules
from edge_ocr.preprocess import crop_box, crop_quad
from edge_ocr.types import Quad, low_confidence

WHOLE_FRAME = "frame"  # the region name used when a camera has no regions
_SIGNATURE_SIDE = 64  # change detection compares regions downscaled to at most this many pixels a side


@dataclass(frozen=True)
class Region:
    """One named region: `box` [x, y, w, h] or `polygon` (4 points), or neither (the whole frame)."""

    name: str
    box: tuple[int, int, int, int] | None = None
    polygon: tuple[tuple[float, float], ...] | None = None
    mode: Literal["line", "text"] = "line"
    pattern: str | None = None
    charset: str | None = None  # the characters the decoder may choose among (None: all)
    min_confidence: float | None = None
    numeric: NumericRules | None = None
    suppress_ghosts: bool = False  # whiten an LCD's unlit segments before reading (preprocess)
    reader: Literal["general", "meter"] = "general"  # the meter model reads one line of digits

    def __post_init__(self) -> None:
        if self.box is not None and self.polygon is not None:
            raise ValueError(f"region {self.name}: give box or polygon, not both")
        if self.polygon is not None and len(self.polygon) != 4:
            raise ValueError(f"region {self.name}: a polygon has 4 points")

    def quad(self, width: int, height: int) -> Quad:
        """The region's corners in frame pixels, clockwise from top-left (for drawing)."""
        if self.polygon is not None:
            pts = order_quad(np.asarray(self.polygon, dtype=np.float32))
            return tuple((float(x), float(y)) for x, y in pts)  # type: ignore[return-value]
        x, y, w, h = self.box if self.box is not None else (0, 0, width, height)
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + w), min(height, y + h)
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region's pixels; perspective-corrected for a polygon; possibly empty if off the frame."""
        if self.polygon is not None:
            return crop_quad(image, order_quad(np.asarray(self.polygon, dtype=np.float32)))
        if self.box is None:
            return image
        return crop_box(image, self.box)

    def clean(self, text: str) -> str:
        """The text with characters outside `charset` removed (unchanged without a charset)."""
        if self.charset is None:
            return text
        return "".join(c for c in text if c in self.charset)

    def is_valid(self, text: str) -> bool:
        return self.pattern is None or re.fullmatch(self.pattern, text) is not None

    def is_sure(self, reading: Reading) -> bool:
        """Neither the mean nor the weakest character probability is below `min_confidence`."""
        return self.unsure(reading) is None

    def unsure(self, reading: Reading) -> str | None:
        """Why `reading` is below `min_confidence` (the `low_confidence` detail), or None."""
        mc = self.min_confidence
        return None if mc is None else low_confidence(reading.confidence, reading.weakest, mc)


def order_quad(pts: np.ndarray) -> np.ndarray:
    """4 points in any order -> clockwise from top-left (what crop_quad expects)."""
    s = pts.sum(axis=1)
    d = np.diff(pts, axis=1).ravel()  # y - x
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]], np.float32)


@dataclass(frozen=True)
class Reading:
    """What one region read on one frame: text, mean and weakest character probability."""

    text: str
    confidence: float
    weakest: float = 1.0
    # each character's probability, in the order read (the setup page shows them)
    char_confidences: tuple[float, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class RegionValue:
    """A value to report: a changed valid reading, or a rejected one (`valid` False, `reason` the rule)."""

    region: str
    text: str
    valid: bool
    confidence: float
    previous: str | None
    forced: bool = False  # published because of `cmd/capture`, changed or not
    reason: str | None = (
        None  # low_confidence, pattern, not_a_number, monotonic, max_jump, max_rate, alignment
    )
    detail: str | None = None  # the reason in words (or how a rebased value came about)
    value: float | None = None  # numeric regions: the accepted number (None when not valid)
    last_value: float | None = None  # numeric regions: the value remembered before this reading
    unit: str | None = None
    rebased: bool = False  # accepted because rejected readings agreed long enough
    withheld: bool = False  # rejected and configured not to be published (evidence and log only)
    numeric: bool = False  # from a numeric region: the message carries value, last_value and unit
    crop: np.ndarray | None = field(default=None, compare=False, repr=False)  # a rejected reading's pixels


@dataclass(frozen=True)
class FrameOutcome:
    """What `RegionTracker.update` did with one frame."""

    values: tuple[RegionValue, ...]
    read: int  # regions OCRed
    unchanged: int  # regions skipped because they did not change visibly
    timings_ms: dict[str, float] = field(default_factory=dict)
    alignment: Alignment | None = None


def signature(crop: np.ndarray) -> np.ndarray | None:
    """A small grey float image of the crop, for the change test; None for an empty crop."""
    if crop.size == 0:
        return None
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    h, w = grey.shape[:2]
    scale = min(1.0, _SIGNATURE_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def difference(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """The largest mean grey-level change over blocks about half the region's height (infinite when
    either is missing or the sizes differ).

    Not the mean over the whole region: on an 8-digit LCD the last digit stepping from 8 to 9 changes
    one segment, and averaged over the region that was 1.5 grey levels, under the 2.0 of sensor noise
    and the default threshold, so the new value was never read (3 of 24 steps of a slow water meter in
    the camera bench). Averaging the *signed* difference per block lets noise cancel while a changed
    segment fills its block.
    """
    if a is None or b is None or a.shape != b.shape:
        return float("inf")
    d = a - b
    h, w = d.shape[:2]
    side = max(1, min(h, w) // 2)
    grid = (max(1, round(w / side)), max(1, round(h / side)))
    blocks = cv2.resize(d, grid, interpolation=cv2.INTER_AREA)
    return float(np.abs(blocks).max())



def regions_from_config(regions: Sequence[Any]) -> list[Region]:
    """Region objects from config `RegionConfig`s."""
    return [
        Region(
            name=r.name,
            box=tuple(int(v) for v in r.box) if r.box is not None else None,  # type: ignore[arg-type]
            polygon=tuple((float(p[0]), float(p[1])) for p in r.polygon) if r.polygon is not None else None,
            mode=r.mode,
            pattern=r.pattern,
            charset=r.allowed_chars(),
            min_confidence=r.confidence_floor(),
            numeric=NumericRules.from_config(r.numeric) if r.numeric is not None else None,
            suppress_ghosts=r.ghosts == "suppress"
            or (r.ghosts == "auto" and r.numeric is not None and r.reader() == "general"),
            reader=r.reader(),
        )
        for r in regions
    ]
