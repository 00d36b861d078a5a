"""Regions of interest on camera frames: alignment, cropping, change detection, debounce, the rules of
meters, evidence, messages.

A camera's frames are read per region (a named box or a perspective-corrected 4-point polygon; the whole
frame when no region is configured). `RegionTracker` holds the per-region state between frames and is
used by one thread (the camera's analysis thread):

- **Alignment** (optional, `edge_ocr.alignment`): each frame is registered to a reference frame and
  warped back before regions are cut. A frame that cannot be aligned is not read; every region reports
  ``reason: alignment`` once per such episode, not once per frame.
- **Change handling**: a region whose downscaled grey image has not changed visibly since the last frame
  it was *read* on (no block of it changed by `change_threshold` grey levels on average, 0..255) is not
  read again: the last reading stands for it. Comparing with the last read frame, not the previous
  frame, lets a slow drift add up until it is read.
- **Constrained reading**: a region's characters (`charset`, or digits for a numeric region) restrict
  the recognizer's decoder itself, so a digit the model found O-shaped is read as the 0 it also saw.
- **Debounce**: a reading counts once it was read the same on `debounce_frames` consecutive analysed
  frames (an unchanged frame counts as the same reading). An empty reading never counts (a dark or
  blank display); it breaks a run.
- **Validation**: `min_confidence` (the mean *and* the weakest character), `pattern` (the whole text),
  and for a numeric region its plausibility rules (`edge_ocr.plausibility`). A reading that fails is
  reported once with ``valid: false`` and the reason (or withheld, as configured), never as the value.
  The next valid reading after it is published even if unchanged, so a consumer sees it is valid again.

`RegionAnalyzer` saves evidence (`edge_ocr.evidence`: the frames of published changes, the crops of
rejected readings) and `value_message` builds the MQTT payload of one value.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.alignment import Aligner, Alignment, load_reference, save_reference
from edge_ocr.draw import render
from edge_ocr.evidence import EvidenceStore
from edge_ocr.plausibility import MeterMemory, NumericCheck, Remembered, parse_number
from edge_ocr.preprocess import suppress_ghosts
from edge_ocr.region_values import (
    WHOLE_FRAME,
    FrameOutcome,
    Reading,
    Region,
    RegionValue,
    difference,
    order_quad,
    regions_from_config,
    signature,
)
from edge_ocr.results import iso, message_id
from edge_ocr.trainingset import TrainingFolder, label_like
from edge_ocr.types import OcrResult, TextLine

log = logging.getLogger(__name__)

@dataclass
class _State:
    signature: np.ndarray | None = None
    reading: Reading | None = None
    candidate: str | None = None
    run: int = 0
    published: str | None = None  # the last valid text published
    published_value: float | None = None
    rejected: tuple[str, str] | None = None  # (text, reason) last reported invalid: reported once
    invalid_out: bool = False  # the last report was invalid: the next valid reading is published
    reason: str | None = None  # why it was invalid
    check: NumericCheck | None = None
    # With a training folder, numeric regions only: the crop last read (as given to the reader) and
    # its text, for cmd/set_value to label. An unchanged frame is not read again, so it still shows
    # what the display shows now.
    last_read: tuple[np.ndarray, str] | None = None
    # A run of rejected readings saved as pending training crops, and the value remembered before it.
    training_run: bool = False
    training_base: float | None = None



class RegionTracker:
    """Per-camera region state; `update(frame)` returns the values to report. One thread at a time."""

    def __init__(
        self,
        engine: Any,  # edge_ocr.pipeline.Engine (anything with run and run_line)
        regions: Sequence[Region] = (),
        *,
        change_threshold: float = 2.0,
        debounce_frames: int = 2,
        memory: MeterMemory | None = None,
        aligner: Aligner | None = None,
        training: TrainingFolder | None = None,
    ) -> None:
        self.engine = engine
        self.regions = tuple(regions) or (Region(WHOLE_FRAME, mode="text"),)
        self.change_threshold = change_threshold
        self.debounce_frames = max(1, debounce_frames)
        self._state = {r.name: _State() for r in self.regions}
        for r in self.regions:
            if r.numeric is not None:
                if memory is None:
                    raise ValueError(f"region {r.name} is numeric: the tracker needs a MeterMemory")
                self._state[r.name].check = NumericCheck(r.name, r.numeric, memory)
        self.memory = memory
        self.aligner = aligner
        self.training = training  # crops of numeric regions for fine-tuning (edge_ocr.trainingset)
        self.alignment: Alignment | None = None  # the last frame's
        self._misaligned: str | None = None  # the reason, while frames cannot be aligned
        self._warned: set[str] = set()

    def last_readings(self) -> dict[str, Reading | None]:
        return {name: st.reading for name, st in self._state.items()}

    def status(self) -> dict[str, Any]:
        """Per region: the last reading and what was last reported; the last alignment."""
        regions = {}
        for r, st in self._items():
            entry: dict[str, Any] = {
                "reading": st.reading.text if st.reading else None,
                "published": st.published,
                "valid": not st.invalid_out,
                "reason": st.reason if st.invalid_out else None,
                "rejected": {"text": st.rejected[0], "reason": st.rejected[1]} if st.rejected else None,
            }
            if r.numeric is not None and self.memory is not None:
                last = self.memory.get(r.name)
                entry["value"] = last.value if last else None
                entry["unit"] = r.numeric.unit
            if self.alignment is not None:
                entry["alignment"] = self.alignment.to_dict()
            regions[r.name] = entry
        return {"regions": regions, "alignment": self.alignment.to_dict() if self.alignment else None}

    def set_value(self, region: str, value: float) -> float | None:
        """Set a numeric region's remembered value (cmd/set_value, on another thread: the memory has a
        lock, and the region's check sees the new baseline at its next reading). Returns the old one."""
        r = next((r for r in self.regions if r.name == region), None)
        if r is None or r.numeric is None or self.memory is None:
            numeric = [r.name for r in self.regions if r.numeric is not None]
            raise KeyError(f"no numeric region {region!r} on this camera (numeric regions: {numeric})")
        before = self.memory.get(region)
        self.memory.set(region, Remembered(value, time.time(), "", "command"))
        self._state[region].published_value = None  # the next valid reading is published, changed or not
        last_read = self._state[region].last_read
        if self.training is not None and last_read is not None:
            crop, text = last_read
            template = text or (before.text if before else "")
            self.training.labelled(region, crop, label_like(value, template, r.numeric.decimals))
        return before.value if before else None

    @staticmethod
    def given(region: Region, crop: np.ndarray) -> np.ndarray:
        """The crop as the reader is given it (an LCD's ghosts whitened where the region asks)."""
        return suppress_ghosts(crop) if region.suppress_ghosts else crop

    def read(self, region: Region, crop: np.ndarray) -> Reading:
        """One region's crop read (also by the setup page's test, on another thread: no state changes)."""
        crop = self.given(region, crop)
        if region.reader == "meter":
            result = self.engine.run_meter(crop, region.charset)
        elif region.mode == "line":
            # A region is drawn on the camera's upright frame: no upside-down check (see run_line).
            result = self.engine.run_line(crop, region.charset, upright=True)
        else:
            result = self.engine.run(crop, region.charset, orient=False)  # mounted as it is
        text = region.clean(result.text)
        conf = min((line.confidence for line in result.lines), default=0.0)
        weakest = min(
            (min(line.char_confidences, default=line.confidence) for line in result.lines), default=0.0
        )
        chars = tuple(float(c) for line in result.lines for c in line.char_confidences)
        return Reading(text=text, confidence=float(conf), weakest=float(weakest), char_confidences=chars)

    def update(self, image: np.ndarray, *, force: bool = False, at: float | None = None) -> FrameOutcome:
        """Analyse one frame. `force` (cmd/capture): read every region and publish every non-empty value.
        `at` is when the frame was captured (epoch seconds; the rate rules measure time by it)."""
        t0 = time.perf_counter()
        at = time.time() if at is None else at
        if self.aligner is not None:
            a = self.alignment = self.aligner.align(image)
            if not a.ok:
                return FrameOutcome(
                    self._not_aligned(a), 0, 0, {"total": (time.perf_counter() - t0) * 1000}, a
                )
            if self._misaligned is not None:
                log.info("alignment: frames align again (shift %.0f px, turn %.1f degrees)", a.shift, a.angle)
                self._misaligned = None
            image = self.aligner.warp(image, a)
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
                given = np.ascontiguousarray(crop)
                reading = self.read(region, given)
                st.signature, st.reading = sig, reading
                read += 1
                if self.training is not None and region.numeric is not None:
                    # a view would keep the whole frame alive until the next read: copy the crop only
                    st.last_read = (given if given.base is None else given.copy(), reading.text)
            value = self._judge(region, st, reading, crop, force, at)
            if value is not None:
                values.append(value)
        timings = {"total": (time.perf_counter() - t0) * 1000}
        return FrameOutcome(tuple(values), read, unchanged, timings, self.alignment)

    def _not_aligned(self, a: Alignment) -> tuple[RegionValue, ...]:
        """Every region reports the failure once per episode (while it lasts, nothing more)."""
        if self._misaligned is not None:
            return ()
        self._misaligned = a.reason or "not aligned"
        log.warning("alignment: %s; regions are not read until frames align again", self._misaligned)
        out = []
        for region, st in self._items():
            st.invalid_out = True
            st.rejected = None
            st.candidate, st.run = None, 0
            out.append(
                self._invalid(region, st, "", Reading("", 0.0), "alignment", self._misaligned, None, False)
            )
        return tuple(out)

    def _invalid(
        self, region: Region, st: _State, text: str, reading: Reading, reason: str, detail: str | None,
        crop: np.ndarray | None, force: bool,
    ) -> RegionValue:  # fmt: skip
        last = self.memory.get(region.name) if region.numeric is not None and self.memory else None
        st.reason = reason
        return RegionValue(
            region=region.name, text=text, valid=False, confidence=reading.confidence, previous=st.published,
            forced=force, reason=reason, detail=detail, value=None,
            last_value=last.value if last else None,
            unit=region.numeric.unit if region.numeric else None,
            withheld=bool(region.numeric and region.numeric.on_invalid == "withhold"),
            numeric=region.numeric is not None,
            crop=crop,
        )  # fmt: skip

    def _judge(
        self, region: Region, st: _State, reading: Reading, crop: np.ndarray, force: bool, at: float
    ) -> RegionValue | None:
        if not reading.text:
            st.candidate, st.run = None, 0
            return None
        text = reading.text
        if text == st.candidate:
            st.run += 1
        else:
            st.candidate, st.run = text, 1
        if st.run < self.debounce_frames and not force:
            return None
        reason = detail = None
        unsure = region.unsure(reading)
        if unsure is not None:
            reason, detail = "low_confidence", unsure
        elif not region.is_valid(text):
            reason, detail = "pattern", f"{text!r} does not match {region.pattern!r}"
        verdict = None
        if reason is None and st.check is not None:
            verdict = st.check.check(text, at)
            if verdict.kind == "reject":
                reason, detail = verdict.reason, verdict.detail
        if reason is not None:
            if (text, reason) == st.rejected and not force:
                return None  # reported already; the value stands
            st.rejected, st.invalid_out = (text, reason), True
            kept = crop.copy()
            if region.numeric is not None:
                # the crop the reader was given, not this frame's when the region was not read again
                given = st.last_read[0] if st.last_read is not None else kept
                self._training_rejected(region, st, given, text, reason, at)
            return self._invalid(region, st, text, reading, reason, detail, kept, force)
        st.rejected = None
        if region.numeric is not None:
            self._training_valid(region, st, text)
        if verdict is not None:  # numeric
            same = verdict.kind == "same"
            if same and st.published_value is not None and not st.invalid_out and not force:
                return None
            last = verdict.last
            value = verdict.value
            previous_text, st.published, st.published_value = st.published, text, value
            st.invalid_out = False
            return RegionValue(
                region=region.name, text=text if not same or last is None else (last.text or text),
                valid=True, confidence=reading.confidence, previous=previous_text, forced=force,
                detail=verdict.detail, value=value,
                last_value=None if same or last is None else last.value,
                unit=region.numeric.unit if region.numeric else None, rebased=verdict.rebased, numeric=True,
            )  # fmt: skip
        if text == st.published and not st.invalid_out and not force:
            return None
        previous, st.published, st.invalid_out = st.published, text, False
        return RegionValue(
            region=region.name, text=text, valid=True, confidence=reading.confidence, previous=previous,
            forced=force,
        )  # fmt: skip

    def _training_rejected(
        self, region: Region, st: _State, crop: np.ndarray, text: str, reason: str, at: float
    ) -> None:
        if self.training is None:
            return
        if not st.training_run:
            last = self.memory.get(region.name) if self.memory is not None else None
            st.training_run, st.training_base = True, last.value if last else None
        self.training.pending(region.name, crop, text, reason, at)

    def _training_valid(self, region: Region, st: _State, text: str) -> None:
        """A valid reading ends a run of rejected ones: if it is the value remembered before the run, the
        display never changed and the rejected crops showed this text. Otherwise nobody knows what
        they showed (the meter moved on in between, or was swapped): they stay unlabelled."""
        if self.training is None or not st.training_run or region.numeric is None:
            return
        st.training_run = False
        value, _ = parse_number(text, region.numeric)
        base = st.training_base
        # Equal, not within the hysteresis: a display flickering in its last digit showed either value.
        if value is not None and base is not None and math.isclose(value, base, rel_tol=1e-12, abs_tol=1e-9):
            self.training.confirm(region.name, text)
        else:
            self.training.release(region.name)

    def annotate(self, image: np.ndarray, values: Sequence[RegionValue]) -> np.ndarray:
        """The frame with every region's box and its last reading drawn (published values included)."""
        h, w = image.shape[:2]
        texts = {r.name: (st.reading.text if st.reading else "") for r, st in self._items()}
        texts.update({v.region: v.text if v.valid else f"{v.text} ({v.reason})" for v in values})
        lines = tuple(
            TextLine(text=f"{r.name}: {texts[r.name]}", confidence=1.0, box=r.quad(w, h))
            for r in self.regions
        )
        return render(image, OcrResult(lines=lines, width=w, height=h))

    def _items(self) -> list[tuple[Region, _State]]:
        return [(r, self._state[r.name]) for r in self.regions]


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
    """The payload of one reported region value; its id is stable per (source, region, value, time).

    A numeric region's message has `value` (the accepted number; null when the reading was rejected:
    a misread is never the value), `last_value` and `unit`. A rejected reading has `valid: false`, the
    rule in `reason` and the sentence in `detail`.
    """
    captured = iso(captured_at)
    msg: dict[str, Any] = {
        "id": message_id(device_id, source, value.region, f"{value.text}\0{value.reason}\0{captured}"),
        "device_id": device_id,
        "source": source,
        "region": value.region,
        "text": value.text,
        "valid": value.valid,
        "reason": value.reason,
        "confidence": round(value.confidence, 4),
        "previous": value.previous,
        "captured_at": captured,
        "processed_at": iso(),
        "model": model,
    }
    if value.detail:
        msg["detail"] = value.detail
    if value.numeric:
        msg.update(value=value.value, last_value=value.last_value, unit=value.unit)
    if value.rebased:
        msg["rebased"] = True
    if value.forced:
        msg["forced"] = True
    if evidence is not None:
        msg["evidence"] = str(evidence)
    if extra:
        msg.update(extra)
    return msg


class RegionAnalyzer:
    """One camera's frames -> the messages to publish (alignment reference, tracker, evidence and the
    message contract together)."""

    def __init__(
        self,
        source: str,
        device_id: str,
        tracker: RegionTracker,
        *,
        model: dict[str, str] | None = None,
        region_models: dict[str, dict[str, Any]] | None = None,
        evidence: EvidenceStore | None = None,
        alignment: Any = None,  # config AlignmentConfig (patches and bounds), or None
        reference_path: Path | None = None,
    ) -> None:
        self.source = source
        self.device_id = device_id
        self.tracker = tracker
        self.model = dict(model or {})
        # The `model` field per region: a numeric region read by the meter model names that model.
        self.region_models = dict(region_models or {})
        self.evidence = evidence
        self.alignment = alignment
        self.reference_path = reference_path
        self._new_reference = threading.Event()
        self._aligner_error: str | None = None

    def request_reference(self) -> None:
        """The next analysed frame becomes the alignment reference (cmd/capture with reference: true)."""
        self._new_reference.set()

    def _ensure_aligner(self, image: np.ndarray) -> None:
        cfg, path = self.alignment, self.reference_path
        if cfg is None or path is None:
            return
        renew = self._new_reference.is_set()
        if self.tracker.aligner is not None and not renew:
            return
        reference = None if renew else load_reference(path)
        if reference is None:
            if save_reference(path, image):
                how = "as asked" if renew else "there was none"
                log.warning(
                    "camera %s: this frame is the alignment reference now (%s): %s", self.source, how, path
                )
            reference = image
        self._new_reference.clear()
        try:
            self.tracker.aligner = Aligner(
                reference, [tuple(p) for p in cfg.patches], max_shift_px=cfg.max_shift_px,
                max_angle_deg=cfg.max_angle_deg, min_score=cfg.min_score,
            )  # type: ignore[misc]  # fmt: skip
            self._aligner_error = None
        except ValueError as exc:
            if self._aligner_error != str(exc):
                log.error("camera %s: alignment cannot be used: %s (%s)", self.source, exc, path)
            self._aligner_error = str(exc)
            self.tracker.aligner = _Unalignable(str(exc))  # type: ignore[assignment]

    def messages(self, image: np.ndarray, captured_at: float, *, force: bool = False) -> list[dict[str, Any]]:
        self._ensure_aligner(image)
        outcome = self.tracker.update(image, force=force, at=captured_at)
        if not outcome.values:
            return []
        frame_path = None
        out = []
        for v in outcome.values:
            path = None
            if self.evidence is not None:
                if v.crop is not None:
                    path = self.evidence.save_rejected(v.crop, captured_at, v)
                else:
                    if frame_path is None:
                        label = "_".join(x.region for x in outcome.values)
                        frame_path = self.evidence.save(
                            self.tracker.annotate(image, outcome.values), captured_at, label
                        )
                    path = frame_path
            if v.withheld:
                log.warning(
                    "camera %s: %s read %r: rejected (%s: %s), withheld",
                    self.source,
                    v.region,
                    v.text,
                    v.reason,
                    v.detail,
                )
                continue
            out.append(
                value_message(
                    device_id=self.device_id,
                    source=self.source,
                    value=v,
                    captured_at=captured_at,
                    model=self.region_models.get(v.region, self.model),
                    evidence=path,
                )  # fmt: skip
            )
        return out


class _Unalignable:
    """Stands in for an Aligner that could not be built: every frame fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def align(self, frame: np.ndarray) -> Alignment:
        return Alignment(False, reason=f"alignment is misconfigured: {self.reason}")

    def warp(self, frame: np.ndarray, alignment: Alignment) -> np.ndarray:
        return frame


__all__ = [
    "WHOLE_FRAME",
    "FrameOutcome",
    "Reading",
    "Region",
    "RegionAnalyzer",
    "RegionTracker",
    "RegionValue",
    "difference",
    "order_quad",
    "regions_from_config",
    "signature",
    "value_message",
]
