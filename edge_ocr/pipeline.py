"""The OCR engine: a decoded image -> OcrResult (detect, classify direction, crop, recognize). No I/O.

An Engine is immutable after construction and safe to call from several threads: every call works on
its own arrays, and onnxruntime's InferenceSession.run is thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_ocr import allocator
from edge_ocr.errors import InputError, ModelError
from edge_ocr.inference import precision as _precision
from edge_ocr.inference.classifier import AngleClassifier
from edge_ocr.inference.ctc import Decoded
from edge_ocr.inference.detector import Detector, DetectorSettings
from edge_ocr.inference.graphcache import default_cache_dir
from edge_ocr.inference.meter import MeterReader
from edge_ocr.inference.recognizer import Recognizer
from edge_ocr.models import ROLES, default_models_dir, load_manifest, set_entry
from edge_ocr.preprocess import crop_quad
from edge_ocr.types import OcrResult, TextLine

PRECISIONS = _precision.MODES
METER = "meter"  # the meter model's set and role in the manifest (edge_ocr.modelbuild.meter)


@dataclass(frozen=True)
class EngineSettings:
    models_dir: Path = field(default_factory=default_models_dir)
    threads: int = 1  # onnxruntime intra-op threads per session
    use_cls: bool = True  # flip upside-down lines (cheap: a 0.6 MB model on 48x192 inputs)
    min_confidence: float = 0.5  # lines read with lower mean character probability are dropped
    # "auto": INT8 where the build's accuracy gate allowed it and it is faster on this CPU (probed once
    # and cached); "fp32" / "int8" force it; or a mapping role -> one of those.
    precision: str | Mapping[str, str] = "auto"
    model_set: str | None = None  # None: the manifest's default set (ppocrv6-small)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    rec_batch_size: int = 4
    # Optimized graphs are kept here for a faster next start (None: optimize at every start).
    graph_cache: Path | None = field(default_factory=default_cache_dir)
    rec_batch_columns: int = 320  # batch only short lines: memory grows with a batch's total width
    # What to load: the general set (det, rec, cls) reads pages, lines and text regions; the meter model
    # reads numeric regions. A daemon that reads only meters loads no general model (memory, start-up).
    general: bool = True
    meter: bool = False


class Engine:
    def __init__(self, settings: EngineSettings | None = None) -> None:
        s = settings or EngineSettings()
        roles_all = (*ROLES, METER)
        modes = s.precision if isinstance(s.precision, Mapping) else dict.fromkeys(roles_all, s.precision)
        for role in roles_all:
            if modes.get(role, "auto") not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, not {modes.get(role)!r}")
        self.settings = s
        manifest = load_manifest(s.models_dir)
        # A meter-only engine needs no general set in the folder (a device that reads only meters).
        self.model_set = (
            set_entry(manifest, s.models_dir, s.model_set)[0]
            if s.general
            else str(s.model_set or manifest.get("default_set"))
        )
        roles = (("det", "rec", "cls") if s.use_cls else ("det", "rec")) if s.general else ()
        chosen = {
            role: _precision.choose(s.models_dir, manifest, self.model_set, role, modes.get(role, "auto"),
                                    s.threads, s.graph_cache)  # fmt: skip
            for role in roles
        }
        if s.meter:
            chosen[METER] = _precision.choose(s.models_dir, manifest, METER, METER, modes.get(METER, "auto"),
                                              s.threads, s.graph_cache)  # fmt: skip
        self.choices = {role: c for role, (c, _) in chosen.items()}
        self._det = Detector(chosen["det"][1], s.detector) if s.general else None
        self._rec = (
            Recognizer(chosen["rec"][1], batch_size=s.rec_batch_size, batch_columns=s.rec_batch_columns)
            if s.general
            else None
        )
        self._cls = AngleClassifier(chosen["cls"][1]) if "cls" in chosen else None
        self._meter = MeterReader(chosen[METER][1]) if METER in chosen else None
        allocator.release()  # the parsed model files

    @property
    def models(self) -> dict[str, Any]:
        """Every loaded model (status): the set, and per role its file, precision and why."""
        return {"set": self.model_set, **{role: c.describe() for role, c in self.choices.items()}}

    def models_for(self, reader: str) -> dict[str, Any]:
        """The `model` field of a result read by `reader` (general or meter): that model only."""
        if reader == METER:
            return {"set": METER, METER: self.choices[METER].describe()} if METER in self.choices else {}
        return {"set": self.model_set, **{r: c.describe() for r, c in self.choices.items() if r != METER}}

    @property
    def has_general(self) -> bool:
        return self._rec is not None

    @property
    def has_meter(self) -> bool:
        return self._meter is not None

    def _general(self) -> tuple[Detector, Recognizer]:
        if self._det is None or self._rec is None:
            raise ModelError(
                "this engine loaded the meter model only, and this read needs the general models",
                remedy="give the region `model: meter` or load the general models (a text region or a "
                "folder source loads them)",
            )
        return self._det, self._rec

    @staticmethod
    def _check(image: np.ndarray) -> None:
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
            raise InputError("engine input must be a uint8 BGR image of shape (H, W, 3)")
        if image.shape[2] != 3:
            raise InputError("engine input must be a uint8 BGR image of shape (H, W, 3)")
        if min(image.shape[:2]) < 2:
            raise InputError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small")

    def _read(
        self,
        crops: list[np.ndarray],
        timings: dict[str, float],
        charset: str | None = None,
        upright: bool = False,
    ) -> list[Decoded]:
        t = time.perf_counter()
        check = self._cls is not None and crops and not upright
        flagged = self._cls.upside_down(crops) if check and self._cls is not None else []
        timings["cls"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        _, rec = self._general()
        out = rec.recognize(crops, charset)
        if flagged:
            # The 0.6 MB classifier calls many short upright receipt lines upside down (on lines_en it
            # raised CER from 0.021 to 0.035). A line it flags is also read turned, and the reading the
            # recognizer is more confident in wins: one extra recognition for the flagged lines only.
            turned = rec.recognize([cv2.rotate(crops[i], cv2.ROTATE_180) for i in flagged], charset)
            for i, alt in zip(flagged, turned, strict=True):
                if alt.confidence > out[i].confidence:
                    out[i] = alt
        timings["rec"] = (time.perf_counter() - t) * 1000
        return out

    def run(self, image: np.ndarray, charset: str | None = None) -> OcrResult:
        """Detect and read every text line of a page or frame; `charset` constrains the decoder."""
        self._check(image)
        det, _ = self._general()
        t0 = time.perf_counter()
        boxes = det.detect(image)
        timings = {"det": (time.perf_counter() - t0) * 1000}
        crops = [crop_quad(image, b.as_array()) for b in boxes]
        read = self._read(crops, timings, charset)
        lines = tuple(
            TextLine(text=d.text, confidence=d.confidence, box=b.points, char_confidences=d.char_confidences)
            for b, d in zip(boxes, read, strict=True)
            if d.text.strip() and d.confidence >= self.settings.min_confidence
        )
        timings["total"] = (time.perf_counter() - t0) * 1000
        allocator.release()  # the page's buffers, before the next page of another size
        return OcrResult(lines=lines, width=image.shape[1], height=image.shape[0], timings_ms=timings)

    def run_line(self, image: np.ndarray, charset: str | None = None, *, upright: bool = False) -> OcrResult:
        """Read an image that is one text line (no detection); the box is the whole image.

        `charset` restricts the decoder to those characters (a meter's digits): see `greedy_decode`.
        `upright`: the line is known to be the right way up (a camera region), so it is not offered to
        the upside-down check: a 7-segment display turned over is still digits (0, 2, 5 and 8 look the
        same, 6 and 9 swap), and the check read such displays turned on 2 of 40 clean generated meters.
        """
        self._check(image)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        (d,) = self._read([image], timings, charset, upright)
        timings["total"] = (time.perf_counter() - t0) * 1000
        return _whole_line(image, d, timings)

    def run_meter(self, image: np.ndarray, charset: str | None = None) -> OcrResult:
        """Read a meter's display or counter crop with the meter model (upright, no detection).

        `charset` restricts the decoder (a region's digits, point and minus)."""
        if self._meter is None:
            raise ModelError(
                "this engine has no meter model loaded",
                remedy="run `edge-ocr models build` (it builds the meter set) and read with --meter or a "
                "numeric region",
            )
        self._check(image)
        t0 = time.perf_counter()
        (d,) = self._meter.read([image], charset)
        ms = (time.perf_counter() - t0) * 1000
        return _whole_line(image, d, {"meter": ms, "total": ms})


def _whole_line(image: np.ndarray, d: Decoded, timings: dict[str, float]) -> OcrResult:
    """The result of reading a whole image as one line: its box is the image."""
    h, w = image.shape[:2]
    box = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
    line = TextLine(text=d.text, confidence=d.confidence, box=box, char_confidences=d.char_confidences)
    return OcrResult(lines=(line,) if d.text else (), width=w, height=h, timings_ms=timings)
