"""DB text detection: image -> probability map -> unclipped, ordered 4-point text boxes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from edge_ocr.inference.session import run
from edge_ocr.types import TextBox

_SCALE = np.float32(1.0 / 127.5)


@dataclass(frozen=True)
class DetectorSettings:
    """DB post-processing as PP-OCR defines it; the defaults are PP-OCRv4's."""

    limit_side_len: int = 960  # see limit_type
    limit_type: str = "max"  # "max": longest side <= limit; "min": shortest side >= limit
    # With "max", an image is never shrunk by more than this factor, up to max_side_len: a 12 MP phone
    # photo read at 960 px loses lines. `edge-ocr bench --camera-like` (the 30 eval receipts as
    # 4032-px photos), page CER / recall: 960 px 0.0275 / 0.893, 1344 px (this bound) 0.0233 / 0.903;
    # RapidOCR 3.10, which reads them at 2000 px, 0.0290 / 0.897. Smaller images gained nothing from a
    # larger reading (the same kind of photos at 1600 px read at 1280: 0.0283 / 0.889 vs 0.0282 / 0.890;
    # the 2077-px scans at 1280: 0.0212 / 0.912 vs 0.0204 / 0.911), so they keep 960.
    max_downscale: float = 3.0
    max_side_len: int = 2000
    thresh: float = 0.3  # pixel probability for the text mask
    box_thresh: float = 0.5  # mean probability inside a box to keep it
    unclip_ratio: float = 1.6  # DB shrinks text regions in training; grow them back by this much
    min_size: int = 3  # shortest box side in map pixels
    max_candidates: int = 1000
    use_dilation: bool = True
    # The network runs on strips of at most strip_rows output rows along the long side, each read with
    # strip_context rows of image either side that are then dropped. Feature maps scale with the
    # pixels of one run: the detector needs 126 MB at its peak for a 448x960 receipt read whole and
    # 42 MB for a 448x384 strip. On the 30 eval receipts, strips of 320+2x32 rows read as well as the
    # whole page (CER 0.0249 vs 0.0251) for 8% more detector work; 0 turns strips off.
    strip_rows: int = 320
    strip_context: int = 32

    def __post_init__(self) -> None:
        if self.max_downscale < 1:
            raise ValueError("detector max_downscale must be at least 1")
        for name in ("strip_rows", "strip_context"):
            if getattr(self, name) % 32 or getattr(self, name) < 0:
                raise ValueError(f"detector {name} must be a non-negative multiple of 32")


def _resize_for_det(img: np.ndarray, s: DetectorSettings) -> np.ndarray:
    h, w = img.shape[:2]
    if s.limit_type == "max":
        long_side = max(h, w)
        # The bound only ever raises the limit (to max_side_len at most); a larger limit given stands.
        side = max(s.limit_side_len, min(long_side / s.max_downscale, s.max_side_len))
        ratio = min(1.0, side / long_side)
    else:
        ratio = max(1.0, s.limit_side_len / min(h, w))
    rh = max(int(round(h * ratio / 32)) * 32, 32)
    rw = max(int(round(w * ratio / 32)) * 32, 32)
    # Bilinear, as the models' thresholds were set for: area averaging read the eval scans a little
    # worse with ppocrv4-mobile (page CER 0.0265 vs 0.0249) and no better with ppocrv6-small.
    return cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)


def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(points)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(pts[:2], key=lambda p: p[1])
    right = sorted(pts[2:], key=lambda p: p[1])
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, min(rect[1])


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=np.float32)
    cv2.fillPoly(mask, [shifted.astype(np.int32)], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """Grow a rectangle by DB's offset distance A*r/L on every side.

    For a rectangle, the min-area rectangle of the rounded polygon offset (what PP-OCR computes with
    pyclipper) is exactly the rectangle grown by the distance, so no polygon library is needed.
    """
    area = cv2.contourArea(box)
    length = cv2.arcLength(box, True)
    if length <= 0:
        return box
    d = area * ratio / length
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(box)
    return cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle))


def _reading_order(boxes: list[TextBox]) -> list[TextBox]:
    """Rows top to bottom, left to right inside a row; a box joins a row when their vertical centres
    are within half the smaller height (tilted receipts keep their rows)."""
    items = sorted(boxes, key=lambda b: (min(p[1] for p in b.points), min(p[0] for p in b.points)))
    rows: list[list[TextBox]] = []
    for b in items:
        ys = [p[1] for p in b.points]
        cy, hh = (min(ys) + max(ys)) / 2, max(ys) - min(ys)
        if rows:
            last = rows[-1]
            lys = [p[1] for q in last for p in q.points]
            lcy = (min(lys) + max(lys)) / 2
            lh = min(max(p[1] for p in q.points) - min(p[1] for p in q.points) for q in last)
            if abs(cy - lcy) <= 0.5 * min(hh, lh):
                last.append(b)
                continue
        rows.append([b])
    return [b for row in rows for b in sorted(row, key=lambda q: min(p[0] for p in q.points))]


class Detector:
    """Immutable DB detector over one onnxruntime session (session.run is thread-safe)."""

    def __init__(self, session: ort.InferenceSession, settings: DetectorSettings | None = None) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.settings = settings or DetectorSettings()

    def _infer(self, part: np.ndarray) -> np.ndarray:
        x = (part.astype(np.float32) * _SCALE - 1.0).transpose(2, 0, 1)[None]
        return run(self._session, {self._input: np.ascontiguousarray(x)})[0][0, 0]

    def probability_map(self, img: np.ndarray) -> np.ndarray:
        s = self.settings
        resized = _resize_for_det(img, s)
        axis = 0 if resized.shape[0] >= resized.shape[1] else 1  # strips run along the long side
        n = resized.shape[axis]
        if s.strip_rows <= 0 or n <= s.strip_rows + 2 * s.strip_context:
            return self._infer(resized)
        # Overlapping strips are blended, each weighted down linearly over its context rows: a strip
        # is least sure near its cut edges, where it sees padding instead of the rest of the page.
        total = np.zeros(resized.shape[:2], dtype=np.float32)
        weight = np.zeros(n, dtype=np.float32)
        for start in range(0, n, s.strip_rows):
            stop = min(start + s.strip_rows, n)
            lo, hi = max(0, start - s.strip_context), min(n, stop + s.strip_context)
            part = self._infer(np.take(resized, range(lo, hi), axis=axis))
            rows = np.arange(lo, hi, dtype=np.float32) + 0.5
            w = np.ones(hi - lo, dtype=np.float32)
            if s.strip_context:
                if lo > 0:
                    w = np.minimum(w, (rows - lo) / s.strip_context)
                if hi < n:
                    w = np.minimum(w, (hi - rows) / s.strip_context)
            weight[lo:hi] += w
            if axis == 0:
                total[lo:hi] += part * w[:, None]
            else:
                total[:, lo:hi] += part * w[None, :]
        return total / (weight[:, None] if axis == 0 else weight[None, :])

    def detect(self, img: np.ndarray) -> list[TextBox]:
        s = self.settings
        h, w = img.shape[:2]
        prob = self.probability_map(img)
        mh, mw = prob.shape
        mask: np.ndarray = (prob > s.thresh).astype(np.uint8)
        if s.use_dilation:
            mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = w / mw, h / mh
        boxes: list[TextBox] = []
        for contour in contours[: s.max_candidates]:
            box, side = _mini_box(contour)
            if side < s.min_size:
                continue
            score = _box_score(prob, box)
            if score < s.box_thresh:
                continue
            box, side = _mini_box(_unclip(box, s.unclip_ratio))
            if side < s.min_size + 2:
                continue
            box[:, 0] = np.clip(np.round(box[:, 0] * sx), 0, w)
            box[:, 1] = np.clip(np.round(box[:, 1] * sy), 0, h)
            bw = np.linalg.norm(box[0] - box[1])
            bh = np.linalg.norm(box[0] - box[3])
            if bw <= 3 or bh <= 3:
                continue
            quad = tuple((float(x), float(y)) for x, y in box)
            boxes.append(TextBox(points=quad, score=score))  # type: ignore[arg-type]
        return _reading_order(boxes)
