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
from edge_ocr.inference.orientation import PageOrienter, to_input
from edge_ocr.inference.recognizer import Recognizer
from edge_ocr.models import ROLES, default_models_dir, load_manifest, set_entry
from edge_ocr.preprocess import crop_quad
from edge_ocr.types import OcrResult, Orientation, TextLine

PRECISIONS = _precision.MODES
METER = "meter"  # the meter model's set and role in the manifest (edge_ocr.modelbuild.meter)
LINE_WIDTH = 256  # run_line's padding when neither the settings nor the model set name one
ORIENT_SET, ORIENT = "orientation", "orient"  # the page orientation model (edge_ocr.modelbuild.orientation)


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
    detector: DetectorSettings | None = None  # None: the defaults the model set's manifest entry gives
    rec_batch_size: int = 4
    # Optimized graphs are kept here for a faster next start (None: optimize at every start).
    graph_cache: Path | None = field(default_factory=default_cache_dir)
    rec_batch_columns: int = 320  # batch only short lines: memory grows with a batch's total width
    # One line read alone (run_line: `ocr --line`, camera line regions) is padded to at least this many
    # columns, towards the 320 the recognizer was trained at; pages keep short buckets (speed). See run_line.
    # None: the model set's manifest entry (`line_width`), else LINE_WIDTH.
    line_width: int | None = None
    # run_line's upside-down check: the turned reading replaces the upright one only when it is this much
    # more confident (mean character probability). See run_line.
    flip_margin: float = 0.05
    # What to load: the general set (det, rec, cls) reads pages, lines and text regions; the meter model
    # reads numeric regions. A daemon that reads only meters loads no general model (memory, start-up).
    general: bool = True
    meter: bool = False
    # Pages (run) are turned upright first when the orientation model is confident (phone photos come
    # in any of four turns); lines and camera regions never are. Off: no orientation model is loaded.
    orientation: bool = True
    orientation_min_confidence: float = 0.75


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
        if s.general and s.orientation:
            if ORIENT_SET not in manifest["sets"]:
                raise ModelError(
                    f"no page orientation model in {s.models_dir} (the manifest has no {ORIENT_SET!r} set)",
                    remedy="run `edge-ocr models build`, or turn page orientation off (engine: "
                    "page_orientation: false)",
                )
            # FP32 only: a forced fp32 says so; anything else takes the manifest's reason.
            mode = "fp32" if s.precision == "fp32" else "auto"
            chosen[ORIENT] = _precision.choose(s.models_dir, manifest, ORIENT_SET, ORIENT, mode, s.threads,
                                               s.graph_cache)  # fmt: skip
        self.choices = {role: c for role, (c, _) in chosen.items()}
        tuned = manifest["sets"][self.model_set]  # what the model set reads best with
        det_settings = s.detector or DetectorSettings(**tuned.get("detector", {}))
        self.line_width = int(tuned.get("line_width", LINE_WIDTH) if s.line_width is None else s.line_width)
        self._det = Detector(chosen["det"][1], det_settings) if s.general else None
        self._rec = (
            Recognizer(chosen["rec"][1], batch_size=s.rec_batch_size, batch_columns=s.rec_batch_columns)
            if s.general
            else None
        )
        self._cls = AngleClassifier(chosen["cls"][1]) if "cls" in chosen else None
        self._meter = MeterReader(chosen[METER][1]) if METER in chosen else None
        self._orient = (
            PageOrienter(chosen[ORIENT][1], s.orientation_min_confidence) if ORIENT in chosen else None
        )
        allocator.release()  # the parsed model files

    @property
    def models(self) -> dict[str, Any]:
        """Every loaded model (status): the set, and per role its file, precision and why."""
        return {"set": self.model_set, **{role: c.describe() for role, c in self.choices.items()}}

    def models_for(self, reader: str) -> dict[str, Any]:
        """The `model` field of a result read by `reader`: "meter", "general" (a line or a camera region) or
        "page" (also the orientation model, when loaded): the models that read it, no others."""
        if reader == METER:
            return {"set": METER, METER: self.choices[METER].describe()} if METER in self.choices else {}
        # Camera regions and lines are never turned: the orientation model is not theirs to name.
        skip = (METER,) if reader == "page" else (METER, ORIENT)
        return {"set": self.model_set, **{r: c.describe() for r, c in self.choices.items() if r not in skip}}

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
        min_width: int | None = None,
        flip_margin: float = 0.0,
    ) -> list[Decoded]:
        t = time.perf_counter()
        check = self._cls is not None and crops and not upright
        flagged = self._cls.upside_down(crops) if check and self._cls is not None else []
        timings["cls"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        _, rec = self._general()
        out = rec.recognize(crops, charset, min_width)
        if flagged:
            # The 0.6 MB classifier calls many short upright receipt lines upside down (on lines_en it
            # raised CER from 0.021 to 0.035). A line it flags is also read turned, and the reading the
            # recognizer is more confident in wins: one extra recognition for the flagged lines only.
            turned_crops = [cv2.rotate(crops[i], cv2.ROTATE_180) for i in flagged]
            turned = rec.recognize(turned_crops, charset, min_width)
            for i, alt in zip(flagged, turned, strict=True):
                if alt.confidence > out[i].confidence + flip_margin:
                    out[i] = alt
        timings["rec"] = (time.perf_counter() - t) * 1000
        return out

    def run(self, image: np.ndarray, charset: str | None = None, *, orient: bool = True) -> OcrResult:
        """Detect and read every text line of a page or frame; `charset` constrains the decoder.

        `orient`: turn the page upright first if the orientation model is loaded and confident (a page);
        False for a camera frame or region, which is mounted the way it is. Boxes are always in the
        input image's coordinates."""
        self._check(image)
        det, _ = self._general()
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        turn = None
        if orient and self._orient is not None:
            turn = self._orient.classify(image)
            timings["orient"] = (time.perf_counter() - t0) * 1000
        page = self._orient.upright(image, turn) if turn is not None and self._orient is not None else image
        t = time.perf_counter()
        boxes = det.detect(page)
        timings["det"] = (time.perf_counter() - t) * 1000
        crops = [crop_quad(page, b.as_array()) for b in boxes]
        read = self._read(crops, timings, charset)
        h, w = image.shape[:2]
        lines = tuple(
            TextLine(text=d.text, confidence=d.confidence, box=_box_on_input(b.points, turn, w, h),
                     char_confidences=d.char_confidences)  # fmt: skip
            for b, d in zip(boxes, read, strict=True)
            if d.text.strip() and d.confidence >= self.settings.min_confidence
        )
        timings["total"] = (time.perf_counter() - t0) * 1000
        allocator.release()  # the page's buffers, before the next page of another size
        return OcrResult(lines=lines, width=w, height=h, timings_ms=timings, orientation=turn)

    def run_line(self, image: np.ndarray, charset: str | None = None, *, upright: bool = False) -> OcrResult:
        """Read an image that is one text line (no detection); the box is the whole image.

        `charset` restricts the decoder to those characters (a meter's digits): see `greedy_decode`.
        `upright`: the line is known to be the right way up (a camera region), so it is not offered to
        the upside-down check: a 7-segment display turned over is still digits (0, 2, 5 and 8 look the
        same, 6 and 9 swap), and the check read such displays turned on 2 of 40 clean generated meters.

        Why a line read alone is read differently from a page's lines (line parity: RapidOCR 3.10 read
        hidden 7-segment crops at 0.92 exact with the same model, we at 0.79; docs/line-parity.md):
        - It is padded to at least `line_width` (256; the tiny set's recognizer reads best unpadded, so its
          manifest entry says 0) columns. Alone in its batch, a short line was padded
          only to its 32-px bucket (a 5-digit display: 128), but PP-OCRv6 was trained on lines padded to
          320 and its neck mixes the whole width. Held-back 7-segment crops: 0.340 -> 0.400 exact
          (RapidOCR 0.397); lines_en 0.905/0.0119 -> 0.905/0.0116, lines_zh_synth 0.0124 -> 0.0124. Wider
          read displays a little better still, but 288 cost lines_en a character (0.0120), 320
          lines_zh_synth 0.0128.
        - The turned reading must be `flip_margin` (0.05) more confident. A display turned over is still
          digits, read about as confidently (699 / 669 both at 1.00): the classifier flagged 66 of 300
          upright 7-segment crops and the turned reading won on 19, 6 of them read right upright. Upright
          text lines are unchanged; of lines_en turned 180 degrees, 522 -> 517 of 640 still read right.
        """
        self._check(image)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        s = self.settings
        (d,) = self._read([image], timings, charset, upright, self.line_width, s.flip_margin)
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


def _box_on_input(points: Any, turn: Orientation | None, width: int, height: int) -> Any:
    if turn is None or not turn.turned:
        return points
    mapped = to_input(np.asarray(points, dtype=np.float32), turn, width, height)
    return tuple((float(x), float(y)) for x, y in mapped)


def _whole_line(image: np.ndarray, d: Decoded, timings: dict[str, float]) -> OcrResult:
    """The result of reading a whole image as one line: its box is the image."""
    h, w = image.shape[:2]
    box = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
    line = TextLine(text=d.text, confidence=d.confidence, box=box, char_confidences=d.char_confidences)
    return OcrResult(lines=(line,) if d.text else (), width=w, height=h, timings_ms=timings)
