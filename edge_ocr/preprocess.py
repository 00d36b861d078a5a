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


def _three_class_thresholds(values: np.ndarray, bins: int = 64) -> tuple[float, float]:
    """Multi-level Otsu with three classes on values in [0, 1]: (lower threshold, mean of the darkest
    class). Vectorized over every pair of thresholds (64 bins: 2k pairs, well under a millisecond)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(int(hist.sum()), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    cum_p, cum_s = np.cumsum(p), np.cumsum(p * centres)
    mu = cum_s[-1]
    i, j = np.triu_indices(bins, k=1)  # class 0: bins < i, class 1: i <= bins < j, class 2: bins >= j
    keep = i >= 1
    i, j = i[keep], j[keep]
    w0, s0 = cum_p[i - 1], cum_s[i - 1]
    w1, s1 = cum_p[j - 1] - w0, cum_s[j - 1] - s0
    w2, s2 = 1 - cum_p[j - 1], mu - cum_s[j - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = s0**2 / w0 + s1**2 / w1 + s2**2 / w2
    between[(w0 <= 1e-9) | (w1 <= 1e-9) | (w2 <= 1e-9)] = -1
    k = int(np.argmax(between))
    return float(edges[i[k]]), float(s0[k] / max(w0[k], 1e-9))


def suppress_ghosts(crop: np.ndarray) -> np.ndarray:
    """A display crop with the LCD's unlit "ghost" segments whitened and uneven light evened out.

    Unlit segments of an LCD stay faintly visible, and the recognizer reads a blank digit cell as the 8
    its ghost shows, and every ghost decimal point as a point (on generated meters with blank leading
    cells, 4-10 of 24 readings were right raw, 21-24 after this). The crop is divided by its background
    (a grey closing wider than a stroke: glare and vignetting divide out), then three classes of
    darkness are separated (ink, ghost, background) and everything lighter than halfway past the ink's
    threshold becomes white. A light-on-dark display is inverted first, so the result is always dark
    on light, as the recognizer was trained.
    """
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    g = grey.astype(np.float32)
    if float(np.median(g)) < 100:
        g = 255 - g
    k = max(3, int(round(g.shape[0] * 0.35)) | 1)
    background = cv2.morphologyEx(g, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    background = cv2.GaussianBlur(background, (0, 0), k / 2)
    norm = np.clip(g / np.maximum(background, 1.0), 0.0, 1.0)
    t1, ink = _three_class_thresholds(norm.ravel())
    hi = t1 + (t1 - ink) * 0.5
    out = (np.clip((norm - ink) / max(hi - ink, 1e-3), 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
