"""Pure OpenCV image operations shared by the stages (no I/O, no models)."""

from __future__ import annotations

import cv2
import numpy as np


def crop_quad(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective-rectify a 4-point box (clockwise from top-left) into an upright line image.

    Boxes much taller than wide are vertical text or a rotated line; they are turned 90 degrees so
    the recognizer always sees a horizontal line.
    """
    quad = quad.astype(np.float32)
    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(quad, dst)
    out = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if h / w >= 1.5:
        out = np.rot90(out)
    return np.ascontiguousarray(out)


def crop_box(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Axis-aligned crop [x, y, w, h], clipped to the image."""
    x, y, w, h = box
    ih, iw = img.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(iw, x + w), min(ih, y + h)
    return img[y0:y1, x0:x1]


def normalize_chw(img: np.ndarray) -> np.ndarray:
    """uint8 HWC BGR -> float32 CHW in [-1, 1], the PP-OCR input convention (mean 0.5, std 0.5)."""
    return (img.astype(np.float32) * np.float32(1.0 / 127.5) - 1.0).transpose(2, 0, 1)
