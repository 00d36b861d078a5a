"""A region tried on one frame before it is saved (the setup page's Test): the daemon's own reading path
(alignment to the camera's reference, the crop, ghosts, the region's reader and charset) and its rules
(min_confidence, pattern, and a numeric region's plausibility against the value remembered for that
name), with nothing remembered, debounced or published.

It runs on a web worker thread beside the camera's analysis thread: it only reads the tracker (its
aligner is immutable, its engine is the gated one, the meter memory has a lock).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_ocr.inference.meter import fitted
from edge_ocr.plausibility import break_of, parse_number
from edge_ocr.region_values import Region
from edge_ocr.regions import RegionTracker


@dataclass(frozen=True)
class Trial:
    """What a region reads on one frame and whether its rules accept it."""

    crop: np.ndarray  # as the reader was given it (aligned, ghosts whitened)
    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    valid: bool
    reason: str | None  # the rule that rejects it (alignment, empty, low_confidence, pattern, ...)
    detail: str | None
    value: float | None  # numeric regions: the number read (None when not a number)
    last_value: float | None  # numeric regions: the value remembered for this region name
    alignment: dict[str, object] | None
    advice: str | None = None  # what would make the region read more reliably (`size_advice`)


# The meter model misreads small counters far more often. On 3,000 fresh rendered drums a camera
# strength (seeds 5,100,000 / 7,700,000 / 9,600,500 + 3 and + 5, INT8 a4b1741d; the crop's height, which
# the reader's cut leaves as it is for most rendered crops), crops under 30 px high were read right 0.88
# / 0.77 of the time at strength 0.7 / 1.0, with 10.7 / 12.3 in 300 wrong above the last digit past the
# confidence floor; at 30-45 px 0.98 / 0.90; at 45 px and more 0.99 / 0.98 with 1.0 / 1.4 in 300. Blur
# in pixels costs a small crop most, but sharp crops under 30 px still read only 0.94. The reader cannot
# make up for it: of the 666 / 619 crops under 45 px in those sets, an unsharp mask read 639 / 524 right
# where the crops as they are read 649 / 533, a cubic upscale 645 / 536.
SMALL_BELOW = 30
GOOD_FROM = 45


def size_advice(region: Region, crop: np.ndarray) -> str | None:
    """A hint when the rows a meter-read region gives the model (cut to what is drawn, as the reader
    cuts them: `inference.meter.fitted`) are too few for a reliable reading; None otherwise. `crop` is
    at least 2x2: `try_region` has returned before for a region outside the frame."""
    if region.reader != "meter":
        return None
    rows = int(fitted(crop).shape[0])
    if rows >= SMALL_BELOW:
        return None
    return (f"the digits' rows are {rows} px high: below {SMALL_BELOW} px the meter model misreads about "
            f"ten times as often as at {GOOD_FROM} px and more; zoom in, move the camera closer or raise "
            "its resolution")  # fmt: skip


def try_region(tracker: RegionTracker, region: Region, image: np.ndarray, at: float) -> Trial:
    """Read `region` on `image` (captured at `at`) as the camera would, judged by its rules; no state
    of the tracker changes."""
    alignment = None
    aligner = tracker.aligner
    if aligner is not None:
        a = aligner.align(image)
        alignment = a.to_dict()
        if not a.ok:
            empty = np.zeros((1, 1, 3), np.uint8)
            return Trial(empty, "", 0.0, (), False, "alignment", a.reason, None, None, alignment)
        image = aligner.warp(image, a)
    crop = region.crop(image)
    if crop.size == 0 or min(crop.shape[:2]) < 2:
        h, w = image.shape[:2]
        empty = np.zeros((1, 1, 3), np.uint8)
        return Trial(empty, "", 0.0, (), False, "outside", f"the region lies outside the {w}x{h} frame",
                     None, None, alignment)  # fmt: skip
    crop = np.ascontiguousarray(crop)
    reading = tracker.read(region, crop)
    text = reading.text
    value = last_value = None
    reason = detail = None
    if not text:
        reason, detail = "empty", "nothing was read"
    elif (unsure := region.unsure(reading)) is not None:
        reason, detail = "low_confidence", unsure
    elif not region.is_valid(text):
        reason, detail = "pattern", f"{text!r} does not match {region.pattern!r}"
    if region.numeric is not None and text:
        value, why = parse_number(text, region.numeric)
        last = tracker.memory.get(region.name) if tracker.memory is not None else None
        last_value = last.value if last is not None else None
        if value is None and reason is None:
            reason, detail = "not_a_number", why
        elif value is not None and last is not None and reason is None:
            broken = break_of(region.numeric, value, text, last, at)
            if broken is not None and abs(value - last.value) > region.numeric.hysteresis + 1e-12:
                reason, detail = broken
    given = tracker.given(region, crop)
    return Trial(
        crop=given, text=text, confidence=reading.confidence,
        char_confidences=reading.char_confidences, valid=reason is None, reason=reason, detail=detail,
        value=value, last_value=last_value, alignment=alignment, advice=size_advice(region, given),
    )  # fmt: skip
