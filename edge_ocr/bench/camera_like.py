"""Camera-like pages made from the scanned eval receipts, for `edge-ocr bench --camera-like`.

The eval pages are flatbed scans; devices photograph. Each receipt is put on a table and
photographed: a perspective of up to 6% of its size per corner, a turn of up to 6 degrees, a
background, light falling off across the frame, a lens blur, sensor noise and JPEG at 65-85, in a 4:3
portrait frame the receipt fills 70-90% of the height of. The ground-truth boxes go through the same
homography, so the pages score as the scans do. A seed makes the set reproducible; it is generated
into a temporary folder and never written next to the eval data.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.bench.evalsets import load_pages
from edge_ocr.decode import read_image


def _homography(w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """The receipt's (w x h) placement in a portrait frame: homography and frame size (unscaled)."""
    fill = rng.uniform(0.7, 0.9)
    fh = int(h / fill)
    fw = max(int(fh * 3 / 4), int(w / 0.9))
    ox, oy = (fw - w) / 2 + rng.uniform(-0.05, 0.05) * fw, (fh - h) / 2
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    jitter = rng.uniform(-0.06, 0.06, (4, 2)) * np.array([w, h])
    placed = corners + np.array([ox, oy]) + jitter
    turn = np.deg2rad(rng.uniform(-6, 6))
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centre = np.array([fw / 2, fh / 2])
    placed = (placed - centre) @ rot.T + centre
    return cv2.getPerspectiveTransform(corners, placed.astype(np.float32)), fw, fh


def photograph(img: np.ndarray, rng: np.random.Generator, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """One camera-like frame of a scanned page, and the homography from the scan to the frame."""
    h, w = img.shape[:2]
    m, fw, fh = _homography(w, h, rng)
    s = long_side / max(fw, fh)
    m = np.diag([s, s, 1.0]) @ m
    ow, oh = int(fw * s), int(fh * s)
    paper = cv2.warpPerspective(img, m, (ow, oh), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, (ow, oh)) > 0
    table = np.empty((oh, ow, 3), np.uint8)
    table[:] = rng.integers(60, 140, 3)
    frame = np.where(inside[..., None], paper, table).astype(np.float32)
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float32)
    gx, gy = rng.uniform(-1, 1, 2)
    light = 1 + 0.35 * ((xx / ow - 0.5) * gx + (yy / oh - 0.5) * gy)
    lit = frame * light[..., None] * np.float32(rng.uniform(0.8, 1.0))
    blurred = cv2.GaussianBlur(lit, (0, 0), rng.uniform(0.6, 1.4) * long_side / 2000)
    noisy = blurred + rng.normal(0, 4, blurred.shape)
    return noisy.clip(0, 255).astype(np.uint8), m


def make(scans: Path, dest: Path, *, long_side: int = 4032, seed: int = 0, limit: int | None = None) -> Path:
    """Write camera-like versions of `scans`/labels.jsonl's pages into `dest` (same layout)."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for row in load_pages(scans, limit):
        frame, m = photograph(read_image(scans / row["image"]), rng, long_side)
        name = f"{Path(row['image']).stem}_camera.jpg"
        quality = int(rng.integers(65, 86))
        if not cv2.imwrite(str(dest / name), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {dest / name}")
        lines = []
        for ln in row["lines"]:
            quad = np.array([ln["box"]], dtype=np.float32)
            lines.append({"text": ln["text"], "box": cv2.perspectiveTransform(quad, m)[0].round(1).tolist()})
        out.append(json.dumps({"image": name, "source_id": row.get("source_id"), "lines": lines}))
    (dest / "labels.jsonl").write_text("\n".join(out) + "\n", encoding="utf-8")
    return dest
