"""Evidence of camera readings: the frames of published changes and the crops of rejected readings,
in a folder bounded by file count and bytes (oldest go first).

A user sees here why a value changed or why a rule fired: the frame with the regions and values drawn,
or the rejected crop enlarged with what was read and the rule drawn under it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from edge_ocr.region_values import RegionValue

log = logging.getLogger(__name__)


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

    def save_rejected(self, crop: np.ndarray, captured_at: float, value: RegionValue) -> Path | None:
        """A rejected reading's crop, enlarged, with what was read and why it was rejected drawn under it."""
        h, w = crop.shape[:2]
        scale = max(1.0, 96 / max(h, 1))
        img = cv2.resize(crop, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        caption = [f"read: {value.text or '(nothing)'}", f"rejected: {value.reason}"]
        if value.last_value is not None:
            caption.append(f"last value: {value.last_value:g}")
        width = max(img.shape[1], 360)
        panel = np.full((img.shape[0] + 24 * len(caption) + 8, width, 3), 255, np.uint8)
        panel[: img.shape[0], : img.shape[1]] = img
        for k, line in enumerate(caption):
            y = img.shape[0] + 22 + 24 * k
            cv2.putText(panel, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 160), 1, cv2.LINE_AA)
        return self.save(panel, captured_at, f"{value.region}-rejected-{value.reason}")

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
