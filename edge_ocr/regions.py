"""Regions of interest on camera frames: cropping, change detection, debounce, evidence, messages.

A camera's frames are read per region (a named box or a perspective-corrected 4-point polygon; the whole
frame when no region is configured). `RegionTracker` holds the per-region state between frames and is
used by one thread (the camera's analysis thread):

- **Change handling**: a region whose downscaled grey image has not changed visibly since the last frame
  it was *read* on (mean absolute difference below `change_threshold`, in grey levels 0..255) is not
  read again: the last reading stands for it. Comparing with the last read frame, not the previous
  frame, lets a slow drift add up until it is read.
- **Debounce**: a value is published when it differs from the last published one and was read the same
  on `debounce_frames` consecutive analysed frames (an unchanged frame counts as the same reading).
  An empty reading is never published (a dark or blank display); it breaks a run.
- **Validation**: the allowed `charset` filters the text (characters outside it are removed); `pattern`
  must match the whole filtered text. A value that fails is published with ``"valid": false``.

`EvidenceStore` keeps the frames (boxes and values drawn) of published changes in a bounded folder.
`value_message` builds the MQTT payload of one published value.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge_ocr.draw import render
from edge_ocr.preprocess import crop_box, crop_quad
from edge_ocr.results import iso, message_id
from edge_ocr.types import OcrResult, Quad, TextLine

log = logging.getLogger(__name__)

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
    charset: str | None = None

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


def order_quad(pts: np.ndarray) -> np.ndarray:
    """4 points in any order -> clockwise from top-left (what crop_quad expects)."""
    s = pts.sum(axis=1)
    d = np.diff(pts, axis=1).ravel()  # y - x
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]], np.float32)


@dataclass(frozen=True)
class Reading:
    """What one region read on one frame (after the charset filter)."""

    text: str
    confidence: float


@dataclass(frozen=True)
class RegionValue:
    """A value to publish: it changed and was read the same on `debounce_frames` frames."""

    region: str
    text: str
    valid: bool
    confidence: float
    previous: str | None
    forced: bool = False  # published because of `cmd/capture`, changed or not


@dataclass(frozen=True)
class FrameOutcome:
    """What `RegionTracker.update` did with one frame."""

    values: tuple[RegionValue, ...]
    read: int  # regions OCRed
    unchanged: int  # regions skipped because they did not change visibly
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class _State:
    signature: np.ndarray | None = None
    reading: Reading | None = None
    candidate: str | None = None
    run: int = 0
    published: str | None = None


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
    """Mean absolute grey-level difference; infinite when either is missing or the sizes differ."""
    if a is None or b is None or a.shape != b.shape:
        return float("inf")
    return float(np.mean(np.abs(a - b)))


class RegionTracker:
    """Per-camera region state; `update(frame)` returns the values to publish. One thread at a time."""

    def __init__(
        self,
        engine: Any,  # edge_ocr.pipeline.Engine (anything with run and run_line)
        regions: Sequence[Region] = (),
        *,
        change_threshold: float = 2.0,
        debounce_frames: int = 2,
    ) -> None:
        self.engine = engine
        self.regions = tuple(regions) or (Region(WHOLE_FRAME, mode="text"),)
        self.change_threshold = change_threshold
        self.debounce_frames = max(1, debounce_frames)
        self._state = {r.name: _State() for r in self.regions}
        self._warned: set[str] = set()

    def last_readings(self) -> dict[str, Reading | None]:
        return {name: st.reading for name, st in self._state.items()}

    def _read(self, region: Region, crop: np.ndarray) -> Reading:
        result = self.engine.run_line(crop) if region.mode == "line" else self.engine.run(crop)
        text = region.clean(result.text)
        conf = min((line.confidence for line in result.lines), default=0.0)
        return Reading(text=text, confidence=float(conf))

    def update(self, image: np.ndarray, *, force: bool = False) -> FrameOutcome:
        """Analyse one frame. `force` (cmd/capture): read every region and publish every non-empty value."""
        t0 = time.perf_counter()
        values: list[RegionValue] = []
        read = unchanged = 0
        for region in self.regions:
            st = self._state[region.name]
            crop = region.crop(image)
            if crop.size == 0 or min(crop.shape[:2]) < 2:
                if region.name not in self._warned:
                    log.warning(
                        "region %s lies outside the %dx%d frame: not read",
                        region.name,
                        image.shape[1],
                        image.shape[0],
                    )
                    self._warned.add(region.name)
                continue
            sig = signature(crop)
            if not force and st.reading is not None and difference(sig, st.signature) < self.change_threshold:
                unchanged += 1
                reading = st.reading
            else:
                reading = self._read(region, np.ascontiguousarray(crop))
                st.signature, st.reading = sig, reading
                read += 1
            value = self._debounce(region, st, reading, force)
            if value is not None:
                values.append(value)
        return FrameOutcome(tuple(values), read, unchanged, {"total": (time.perf_counter() - t0) * 1000})

    def _debounce(self, region: Region, st: _State, reading: Reading, force: bool) -> RegionValue | None:
        if not reading.text:
            st.candidate, st.run = None, 0
            return None
        if reading.text == st.candidate:
            st.run += 1
        else:
            st.candidate, st.run = reading.text, 1
        if force or (st.run >= self.debounce_frames and reading.text != st.published):
            previous, st.published = st.published, reading.text
            return RegionValue(
                region=region.name,
                text=reading.text,
                valid=region.is_valid(reading.text),
                confidence=reading.confidence,
                previous=previous,
                forced=force,
            )
        return None

    def annotate(self, image: np.ndarray, values: Sequence[RegionValue]) -> np.ndarray:
        """The frame with every region's box and its last reading drawn (published values included)."""
        h, w = image.shape[:2]
        texts = {r.name: (st.reading.text if st.reading else "") for r, st in self._items()}
        texts.update({v.region: v.text for v in values})
        lines = tuple(
            TextLine(text=f"{r.name}: {texts[r.name]}", confidence=1.0, box=r.quad(w, h))
            for r in self.regions
        )
        return render(image, OcrResult(lines=lines, width=w, height=h))

    def _items(self) -> list[tuple[Region, _State]]:
        return [(r, self._state[r.name]) for r in self.regions]


class EvidenceStore:
    """Frames saved when a value changes, in a folder bounded by file count and bytes (oldest go first).

    Only files this store writes (``<prefix>-*.jpg``) are counted and deleted.
    """

    def __init__(self, directory: Path, prefix: str, *, max_files: int = 100, max_bytes: int = 50 << 20):
        self.directory = Path(directory)
        self.prefix = prefix
        self.max_files = max(1, max_files)
        self.max_bytes = max(1, max_bytes)
        self._lock = threading.Lock()

    def save(self, image: np.ndarray, captured_at: float, label: str) -> Path | None:
        """Write a JPEG and prune; returns its path, or None (logged) when it cannot be written."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(captured_at)) + f"{captured_at % 1:.3f}"[1:]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:40]
        path = self.directory / f"{self.prefix}-{stamp}Z-{safe}.jpg"
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                if not ok:
                    raise OSError("JPEG encoding failed")
                tmp = path.with_suffix(".jpg.tmp")
                tmp.write_bytes(buf.tobytes())
                tmp.replace(path)
            except OSError as exc:
                log.warning("evidence: cannot write %s: %s", path, exc)
                return None
            self._prune()
        return path

    def _prune(self) -> None:
        files = []
        for p in self.directory.glob(f"{self.prefix}-*.jpg"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, p.name, st.st_size, p))
        files.sort()
        total = sum(f[2] for f in files)
        while files and (len(files) > self.max_files or total > self.max_bytes):
            _, _, size, p = files.pop(0)
            try:
                p.unlink()
                total -= size
            except OSError as exc:
                log.warning("evidence: cannot delete %s: %s", p, exc)
                break


def value_message(
    *,
    device_id: str,
    source: str,
    value: RegionValue,
    captured_at: float,
    model: dict[str, str],
    evidence: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload of one published region value; its id is stable per (source, region, value, time)."""
    captured = iso(captured_at)
    msg: dict[str, Any] = {
        "id": message_id(device_id, source, value.region, f"{value.text}\0{captured}"),
        "device_id": device_id,
        "source": source,
        "region": value.region,
        "text": value.text,
        "valid": value.valid,
        "confidence": round(value.confidence, 4),
        "previous": value.previous,
        "captured_at": captured,
        "processed_at": iso(),
        "model": model,
    }
    if value.forced:
        msg["forced"] = True
    if evidence is not None:
        msg["evidence"] = str(evidence)
    if extra:
        msg.update(extra)
    return msg


class RegionAnalyzer:
    """One camera's frames -> the messages to publish (tracker, evidence and message contract together)."""

    def __init__(
        self,
        source: str,
        device_id: str,
        tracker: RegionTracker,
        *,
        model: dict[str, str] | None = None,
        evidence: EvidenceStore | None = None,
    ) -> None:
        self.source = source
        self.device_id = device_id
        self.tracker = tracker
        self.model = dict(model or {})
        self.evidence = evidence

    def messages(self, image: np.ndarray, captured_at: float, *, force: bool = False) -> list[dict[str, Any]]:
        outcome = self.tracker.update(image, force=force)
        if not outcome.values:
            return []
        path = None
        if self.evidence is not None:
            label = "_".join(v.region for v in outcome.values)
            path = self.evidence.save(self.tracker.annotate(image, outcome.values), captured_at, label)
        return [
            value_message(
                device_id=self.device_id,
                source=self.source,
                value=v,
                captured_at=captured_at,
                model=self.model,
                evidence=path,
            )
            for v in outcome.values
        ]


def regions_from_config(regions: Sequence[Any]) -> list[Region]:
    """Region objects from config `RegionConfig`s."""
    return [
        Region(
            name=r.name,
            box=tuple(int(v) for v in r.box) if r.box is not None else None,  # type: ignore[arg-type]
            polygon=tuple((float(p[0]), float(p[1])) for p in r.polygon) if r.polygon is not None else None,
            mode=r.mode,
            pattern=r.pattern,
            charset=r.charset,
        )
        for r in regions
    ]
