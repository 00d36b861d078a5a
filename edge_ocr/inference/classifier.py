"""0/180 degree text-line direction classifier (PP-OCR mobile cls)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnxruntime as ort

from edge_ocr.inference.session import run
from edge_ocr.preprocess import normalize_chw

_H, _W = 48, 192


class AngleClassifier:
    """Immutable; names the lines the model reads as upside down with probability >= thresh."""

    def __init__(self, session: ort.InferenceSession, thresh: float = 0.9, batch_size: int = 8) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self.thresh = thresh
        self.batch_size = batch_size

    def _prepare(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        rw = min(_W, max(1, int(math.ceil(_H * w / h))))
        x = np.zeros((3, _H, _W), dtype=np.float32)
        x[:, :, :rw] = normalize_chw(cv2.resize(img, (rw, _H)))
        return x

    def upside_down(self, crops: list[np.ndarray]) -> list[int]:
        """Indices of the crops the model reads as turned 180 degrees."""
        flagged: list[int] = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.stack([self._prepare(c) for c in crops[start : start + self.batch_size]])
            probs = run(self._session, {self._input: batch})[0]
            flagged.extend(start + k for k, p in enumerate(probs) if p.argmax() == 1 and p[1] >= self.thresh)
        return flagged
