"""The training folder of one camera: crops of its meter regions, labelled by what the device learnt.

Owns ``<state_dir>/training/<source>/``: PNG crops (as cut from the aligned frame, before ghost
suppression: what the reader was given) and two indexes beside them:

- ``labels.tsv``: ``FILE<TAB>TEXT`` per crop, the text exactly as the display shows it; what
  ``edge-ocr train meter --from DIR`` reads (`edge_ocr.train.meter.load_folder`);
- ``pending.tsv``: ``FILE<TAB>READ<TAB>REASON<TAB>CAPTURED_AT`` per crop whose truth is not known (yet):
  crops of rejected readings. A person may label one by moving its line to labels.tsv as ``FILE<TAB>TEXT``.

How crops get a label (the hooks are in `edge_ocr.regions.RegionTracker`):

- a rejected reading's crop is `pending`; when the region's next valid reading is the value remembered
  before the rejections, the display never changed, so those crops showed that reading's text and
  `confirm` labels them. When a different value comes next, nothing is known and they stay pending
  (`release`): a guessed label would teach the model its own mistakes;
- `cmd/set_value` (a person tells the true value) labels the region's latest crop (`labelled`).

Bounded by file count and bytes: the oldest crops (by the UTC time that starts their names) go first,
with their lines. A disk that is full, read-only or gone never raises into the camera thread: the crop
is dropped, one warning per episode, and writing resumes by itself when it can.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

LABELS = "labels.tsv"
PENDING = "pending.tsv"
_PENDING_HEADER = (
    "# file\tread\treason\tcaptured_at (UTC). Not labelled: to label one, move its line to "
    f"{LABELS} as file<TAB>text (exactly as the display shows it)."
)
# Only files named like this are counted and deleted: a person's own files in the folder are left alone.
_CROP_NAME = re.compile(r"\d{8}T\d{6}\.\d{3}Z-[A-Za-z0-9_.-]+\.png")


def label_like(value: float, template: str, decimals: int | None = None) -> str:
    """`value` written the way `template` (a reading of the same display) shows a number: as many digits
    before the point (zero-padded) and, with `decimals` None, after it; the same point character, or
    none. 4868.1 like "04867.4" -> "04868.1"; like "048674" with decimals=1 -> "048681"."""
    if not any(c.isdigit() for c in template):
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"
    point = next((c for c in template if c in ".,"), None)
    whole_t, _, frac_t = template.partition(point) if point else (template, "", "")
    before = sum(c.isdigit() for c in whole_t)
    places = decimals if decimals is not None else sum(c.isdigit() for c in frac_t)
    # Whole and fraction from one rounded integer: a fraction that rounds up carries (9.96 -> "10.0").
    n = round(abs(value) * 10**places)
    sign = "-" if value < 0 and n else ""
    if point is None:  # a drum counter's last drums: the decimals are digits without a point
        return f"{sign}{n:0{before}d}"
    whole, frac = divmod(n, 10**places)
    return f"{sign}{whole:0{before}d}{point}" + (f"{frac:0{places}d}" if places else "")


def _field(text: str) -> str:
    """A TSV field: a tab or line break inside would shift or split the line."""
    return re.sub(r"[\t\r\n]", " ", text)


def _first_field(line: str) -> str:
    return line.partition("\t")[0]


class TrainingFolder:
    """One camera's folder of meter crops (see the module docstring). Thread-safe: the camera's analysis
    thread adds pending crops, the MQTT thread labels one on `cmd/set_value`."""

    def __init__(self, root: Path, max_files: int = 500, max_bytes: int = 20 << 20) -> None:
        self.root = Path(root)
        self.max_files = max(1, max_files)
        self.max_bytes = max(1, max_bytes)
        self._lock = threading.Lock()
        # The pending crops of each region's current run of rejections, oldest first. In memory only:
        # after a restart nobody knows what the display showed, so older pending crops stay unlabelled.
        self._open: dict[str, list[str]] = {}
        self._failing = False

    # ------------------------------------------------------------------ the hooks

    def pending(self, region: str, crop: np.ndarray, read_text: str, reason: str, at: float) -> Path | None:
        """Keep a rejected reading's crop, unlabelled; returns its path, or None when it was dropped."""
        with self._lock:
            path = self._add(region, crop, at, PENDING, f"{_field(read_text)}\t{_field(reason)}\t{_iso(at)}")
            if path is not None:
                self._open.setdefault(region, []).append(path.name)
            return path

    def confirm(self, region: str, text: str) -> int:
        """The display showed `text` all through the region's current run of pending crops: label them.
        Returns how many were labelled."""
        with self._lock:
            names = set(self._open.pop(region, ()))
            if not names:
                return 0
            try:
                pending = self._lines(PENDING)
                moved = [line for line in pending if _first_field(line) in names]
                if moved:
                    labels = self._lines(LABELS) + [f"{_first_field(line)}\t{_field(text)}" for line in moved]
                    # labels first: a crash in between leaves a crop in both, not in neither
                    self._write_lines(LABELS, labels)
                    self._write_lines(PENDING, [line for line in pending if line not in moved])
            except OSError as exc:
                self._trouble(exc)
                return 0
            self._fine()
            if moved:
                log.info("training %s: %d crop(s) of %s labelled %r", self.root, len(moved), region, text)
            return len(moved)

    def release(self, region: str) -> None:
        """The region's run of pending crops ended without a known truth: they stay unlabelled."""
        with self._lock:
            names = self._open.pop(region, ())
        if names:
            log.debug("training %s: %d crop(s) of %s stay unlabelled", self.root, len(names), region)

    def labelled(self, region: str, crop: np.ndarray, text: str, at: float | None = None) -> Path | None:
        """Keep a crop whose text is known; returns its path, or None when it was dropped."""
        with self._lock:
            return self._add(region, crop, time.time() if at is None else at, LABELS, _field(text))

    # ------------------------------------------------------------------ files

    def _add(self, region: str, crop: np.ndarray, at: float, index: str, rest: str) -> Path | None:
        if crop is None or crop.size == 0:
            return None
        try:
            ok, buf = cv2.imencode(".png", crop)
        except cv2.error as exc:  # not a disk problem: an image PNG cannot hold (a float crop)
            log.warning(
                "training %s: a crop of %s cannot be encoded as PNG (%s): dropped", self.root, region, exc
            )
            return None
        if not ok:
            log.warning("training %s: a crop of %s cannot be encoded as PNG: dropped", self.root, region)
            return None
        path = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self._new_path(region, at)
            _write_atomic(path, buf.tobytes())
            lines = self._lines(index)
            if index == PENDING and not lines:
                lines = [_PENDING_HEADER]
            self._write_lines(index, [*lines, f"{path.name}\t{rest}"])
        except OSError as exc:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)  # not listed: it would only take room
            self._trouble(exc)
            return None
        self._fine()
        self._prune()
        return path

    def _new_path(self, region: str, at: float) -> Path:
        # The UTC time first: names sort by age, which is what pruning deletes by.
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
        base = f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]', '_', region)[:40]}"
        path, k = self.root / f"{base}.png", 1
        while path.exists():
            path, k = self.root / f"{base}-{k}.png", k + 1
        return path

    def _lines(self, index: str) -> list[str]:
        """An index's lines as they are on disk (a person may have edited it: their lines are kept)."""
        try:
            text = (self.root / index).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _write_lines(self, index: str, lines: list[str]) -> None:
        # Rewritten whole and atomically (the folder is bounded, so it stays small): a torn append
        # would leave a line that load_folder reads as a wrong label.
        _write_atomic(self.root / index, "".join(f"{line}\n" for line in lines).encode("utf-8"))

    def _prune(self) -> None:
        files = []
        try:
            for entry in os.scandir(self.root):
                if _CROP_NAME.fullmatch(entry.name):
                    with contextlib.suppress(OSError):
                        files.append((entry.name, entry.stat().st_size))
        except OSError as exc:
            self._trouble(exc)
            return
        files.sort()
        total = sum(size for _, size in files)
        gone: set[str] = set()
        # The newest stays even when it alone is over the bytes: it was just written for a reason.
        while len(files) > 1 and (len(files) > self.max_files or total > self.max_bytes):
            name, size = files.pop(0)
            try:
                (self.root / name).unlink(missing_ok=True)
            except OSError as exc:
                self._trouble(exc)
                break
            total -= size
            gone.add(name)
        if not gone:
            return
        for names in self._open.values():
            names[:] = [n for n in names if n not in gone]
        try:
            for index in (LABELS, PENDING):
                lines = self._lines(index)
                kept = [line for line in lines if _first_field(line) not in gone]
                if len(kept) != len(lines):
                    self._write_lines(index, kept)
        except OSError as exc:
            self._trouble(exc)  # load_folder skips a line whose file is missing
        log.debug("training %s: %d oldest crop(s) deleted (bounds)", self.root, len(gone))

    def _trouble(self, exc: OSError) -> None:
        if not self._failing:
            log.warning(
                "training folder %s cannot be written (%s): crops are dropped until it can", self.root, exc
            )
        self._failing = True

    def _fine(self) -> None:
        if self._failing:
            log.info("training folder %s is written again", self.root)
        self._failing = False


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
