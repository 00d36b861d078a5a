"""Render an OcrResult over its image (for `edge-ocr ocr --draw` and camera evidence)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_ocr.types import OcrResult


def render(image: np.ndarray, result: OcrResult) -> np.ndarray:
    """Boxes in green, the text above each box. OpenCV's Hershey fonts are ASCII only: other
    characters are drawn as '?' (the JSON output carries the real text)."""
    out = image.copy()
    for line in result.lines:
        pts = np.asarray(line.box, dtype=np.int32)
        cv2.polylines(out, [pts], True, (0, 200, 0), 2)
        label = "".join(c if 32 <= ord(c) < 127 else "?" for c in line.text)
        x, y = int(pts[:, 0].min()), int(pts[:, 1].min())
        scale = max(0.4, min(1.2, (pts[:, 1].max() - pts[:, 1].min()) / 40))
        cv2.putText(
            out, label, (x, max(12, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 255), 1, cv2.LINE_AA
        )
    return out


def draw_result(image: np.ndarray, result: OcrResult, path: Path) -> None:
    if not cv2.imwrite(str(path), render(image, result)):
        raise OSError(f"cannot write {path}")
