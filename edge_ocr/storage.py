"""The storage guard: is there room, and a usable folder, for everything the daemon writes?

The daemon writes to three kinds of folder: ``state_dir`` (the outbox), and each folder source's
``done_dir`` and ``failed_dir``. A full SD card, a folder remounted read-only or an unmounted USB stick
are conditions of the device, not bugs: they must hold new work back, be reported, and clear by
themselves. This module owns that judgement; the daemon asks it and reports what it says.

- **Before the disk is full.** `check` reads statvfs for each folder. Below the reserve
  (`StorageConfig.reserve_bytes`, the smaller of ``min_free_mb`` and ``min_free_percent``) the folder is
  *low on space*; it clears only above the reserve plus a margin, so a disk hovering at the threshold
  does not flap. No free inode counts as full too. A read-only filesystem (ST_RDONLY) or a folder
  that cannot be written (access W_OK) is reported as such.
- **When the disk is full anyway.** A write that fails (`failed`: ENOSPC, EROFS, EACCES, ENOENT, EIO,
  or SQLite's FULL / READONLY / IOERR) marks its folder with that condition and holds it for a backoff
  (1 s doubling to 60 s per failure in a row); then, if statvfs agrees, work is tried again. A write
  that works (`worked`) ends the episode; so does a quiet minute after the retry.
- **A vanished folder.** At start each folder's mount point is noted. A folder that is missing while
  that mount point is still mounted was deleted: it is created again. If the mount point is not
  mounted any more (an unplugged USB stick), creating the folder would write into the bare mount
  point on the root filesystem, so it is reported missing until the filesystem is back.
- **Best-effort places.** A place given as `best_effort` (the history of readings) holds no work back:
  its writer skips writes while it is not usable. Its reserve is twice the configured one, so a
  filling disk gives it up before the folders whose work must not be lost; its sentence says what is
  skipped meanwhile.
- **One warning per episode.** The first problem logs one WARNING with the folder and its free space;
  further problems in the same episode are INFO; the end of the episode is INFO. Nothing here logs a
  traceback: these are expected conditions.

Thread safety: `check` runs on the daemon's main thread; `failed`, `worked` and the queries run on
workers and sources. Probing (statvfs, which may block on a dead mount) happens outside the lock.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ocr.config import StorageConfig

__all__ = ["CONDITIONS", "Place", "StorageGuard", "condition_of"]

log = logging.getLogger(__name__)

# condition -> how it reads in a sentence
CONDITIONS = {
    "low_space": "is short of space",
    "full": "is full",
    "read_only": "is read-only",
    "not_writable": "is not writable",
    "missing": "is missing",
    "io_error": "has I/O errors",
}
_ERRNO = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EFBIG: "full",
    errno.EROFS: "read_only",
    errno.EACCES: "not_writable",
    errno.EPERM: "not_writable",
    errno.ENOENT: "missing",
    errno.ENOTDIR: "missing",
    errno.ENODEV: "missing",
    errno.ENXIO: "missing",
    errno.EIO: "io_error",
}
_SQLITE = {"SQLITE_FULL": "full", "SQLITE_READONLY": "read_only", "SQLITE_IOERR": "io_error",
           "SQLITE_CANTOPEN": "not_writable", "SQLITE_PERM": "not_writable"}  # fmt: skip
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
PROBATION_S = 60.0  # after a retry, this long without a new failure ends the episode too
_MARGIN_MIN = 1024 * 1024  # resume only this far above the reserve (or a quarter of it, if more)


def condition_of(exc: BaseException | None) -> str | None:
    """The storage condition behind an exception (following its causes), or None if it is not one."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _ERRNO:
            return _ERRNO[exc.errno]
        if isinstance(exc, sqlite3.Error):
            name = getattr(exc, "sqlite_errorname", "") or ""
            for prefix, cond in _SQLITE.items():
                if name == prefix or name.startswith(prefix + "_"):
                    return cond
            text = str(exc).lower()
            if "disk is full" in text:
                return "full"
            if "readonly" in text or "read-only" in text:
                return "read_only"
            if "disk i/o error" in text:
                return "io_error"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _mb(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 1e9:.1f} GB" if n >= 10e9 else f"{n / 1e6:.1f} MB"


@dataclass
class _Probe:
    cond: str | None
    detail: str
    free: int | None = None
    total: int | None = None
    reserve: int | None = None


@dataclass
class Place:
    """One folder the daemon writes to, and what is known about it now."""

    key: str  # "state", "done:<source>", "failed:<source>"
    label: str  # how a sentence names it: "state_dir", "done_dir of inbox"
    path: Path
    mount: Path  # the mount point of its filesystem when the guard started
    existed: bool = True  # False: not created yet (a first start), so its absence is no news
    best_effort: str = ""  # set: nothing waits for this place; the sentence says what is skipped
    cond: str | None = None
    detail: str = ""
    from_error: bool = False  # set by a failed write (held for the backoff), not by statvfs
    retry_at: float = 0.0
    backoff: float = 0.0
    probation_until: float | None = None
    free: int | None = None
    total: int | None = None
    reserve: int | None = None

    def describe(self) -> str:
        what = CONDITIONS.get(self.cond or "", self.cond or "is fine")
        space = f" ({_mb(self.free)} free" if self.free is not None else ""
        if space and self.cond == "low_space" and self.reserve is not None:
            space += f", reserve {_mb(self.reserve)}"
        space += ")" if space else ""
        detail = f": {self.detail}" if self.detail and self.cond != "low_space" else ""
        skipped = f" ({self.best_effort})" if self.best_effort else ""
        return f"{self.label} {self.path} {what}{space}{detail}{skipped}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": self.key,
            "path": str(self.path),
            "ok": self.cond is None,
            "condition": self.cond or "ok",
            "detail": self.detail or None,
            "free_bytes": self.free,
            "total_bytes": self.total,
            "reserve_bytes": self.reserve,
            "best_effort": bool(self.best_effort),
        }


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path` (or its nearest existing parent)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


class StorageGuard:
    """Watches the folders the daemon writes to; see the module docstring for the rules."""

    def __init__(
        self,
        places: Iterable[tuple[str, str, Path]],
        config: StorageConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        best_effort: Iterable[tuple[str, str, Path, str]] = (),
    ) -> None:
        """`best_effort`: (key, label, path, what is skipped while it is not usable) of places whose
        writes may be skipped (see the module docstring)."""
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._places = {
            key: Place(key, label, Path(path), _mount_point(Path(path)), Path(path).is_dir())
            for key, label, path in places
        }
        for key, label, path, skipped in best_effort:
            at = Path(path)
            self._places[key] = Place(key, label, at, _mount_point(at), at.is_dir(), best_effort=skipped)
        self._episode = False
        self._announced: set[tuple[str, str]] = set()
        self._last_check = -1e18

    # ------------------------------------------------------------------ queries

    def usable(self, keys: Iterable[str]) -> bool:
        """Can work that writes to these folders be taken now?"""
        with self._lock:
            return all(self._places[k].cond is None for k in keys if k in self._places)

    @property
    def ok(self) -> bool:
        with self._lock:
            return all(p.cond is None for p in self._places.values())

    def reason(self) -> str | None:
        """One line naming every folder with a problem and its free space; None when all is well."""
        with self._lock:
            bad = [p.describe() for p in self._places.values() if p.cond is not None]
        return "; ".join(bad) if bad else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            places = [p.as_dict() for p in self._places.values()]
            bad = [p for p in self._places.values() if p.cond is not None]
            reason = "; ".join(p.describe() for p in bad) or None
            condition = bad[0].cond if bad else None
        return {"ok": not bad, "condition": condition, "reason": reason, "folders": places}

    # ------------------------------------------------------------------ checking

    def due(self) -> bool:
        """A check is due: every check_interval_s, every second while something is wrong."""
        with self._lock:
            bad = any(p.cond is not None or p.probation_until is not None for p in self._places.values())
        interval = min(1.0, self.config.check_interval_s) if bad else self.config.check_interval_s
        return self._clock() - self._last_check >= interval

    def check(self) -> None:
        """Probe every folder (statvfs, writable, present) and update the state; main thread."""
        self._last_check = self._clock()
        with self._lock:
            places = list(self._places.values())
        probes = {p.key: self._probe(p) for p in places}
        now = self._clock()
        with self._lock:
            for p in places:
                self._apply(p, probes[p.key], now)
            self._bookkeep(now)

    def _probe(self, p: Place) -> _Probe:
        path = p.path
        if not path.is_dir():
            made = self._recreate(p)
            if made is not None:
                return made
        try:
            st = os.statvfs(path)
        except OSError as exc:
            return _Probe(_ERRNO.get(exc.errno or 0, "io_error"), exc.strerror or str(exc))
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        reserve = self.config.reserve_bytes(total) * (2 if p.best_effort else 1)
        probe = _Probe(None, "", free, total, reserve)
        if st.f_flag & os.ST_RDONLY:
            probe.cond, probe.detail = "read_only", "mounted read-only"
        elif not os.access(path, os.W_OK):
            probe.cond, probe.detail = "not_writable", "no write permission"
        elif st.f_files > 0 and st.f_favail == 0:
            probe.cond, probe.detail = "full", "no free inodes"
        elif reserve > 0:
            margin = max(_MARGIN_MIN, reserve // 4) if p.cond == "low_space" else 0
            if free < reserve + margin:
                probe.cond = "low_space"
        return probe

    def _recreate(self, p: Place) -> _Probe | None:
        """A missing folder: create it again where that is safe, else report it missing."""
        if not os.path.ismount(p.mount):
            return _Probe("missing", f"its filesystem ({p.mount}) is not mounted")
        try:
            p.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _Probe(_ERRNO.get(exc.errno or 0, "io_error"), f"cannot create it: {exc.strerror or exc}")
        if p.existed:
            log.info("storage: %s %s was removed; created it again", p.label, p.path)
        p.existed = True
        return None

    def _apply(self, p: Place, probe: _Probe, now: float) -> None:
        p.free, p.total, p.reserve = probe.free, probe.total, probe.reserve
        if p.cond is not None and p.from_error:
            if now < p.retry_at:
                return  # held for the backoff, whatever statvfs says
            if probe.cond is None:
                p.cond, p.detail, p.from_error = None, "", False
                p.probation_until = now + PROBATION_S
                log.debug("storage: %s: retrying after %.0f s", p.label, p.backoff)
                return
        p.cond, p.detail, p.from_error = probe.cond, probe.detail, False
        if p.cond is None and p.probation_until is not None and now >= p.probation_until:
            p.probation_until, p.backoff = None, 0.0

    # ------------------------------------------------------------------ reports from writers

    def failed(self, key: str, exc: BaseException) -> str | None:
        """A write to folder `key` failed: returns its condition (the work is held and retried with
        backoff), or None when `exc` is not a storage condition (a bug: the caller reports it)."""
        cond = condition_of(exc)
        if cond is None or key not in self._places:
            return None
        p = self._places[key]
        free = None
        try:
            st = os.statvfs(p.path)
            free = st.f_bavail * st.f_frsize
        except OSError:
            pass
        now = self._clock()
        with self._lock:
            p.backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, p.backoff * 2))
            p.retry_at = now + p.backoff
            p.cond, p.from_error, p.probation_until = cond, True, None
            p.detail = _short(exc)
            if free is not None:
                p.free = free
            self._bookkeep(now)
        return cond

    def worked(self, key: str) -> None:
        """A write to folder `key` worked: a retry after a failure succeeded."""
        with self._lock:
            p = self._places.get(key)
            if p is None or p.probation_until is None:
                return
            p.probation_until, p.backoff = None, 0.0
            self._bookkeep(self._clock())

    def _bookkeep(self, now: float) -> None:
        """Log the start of an episode once (WARNING), what joins it (INFO) and its end (INFO)."""
        bad = [p for p in self._places.values() if p.cond is not None]
        pending = any(p.probation_until is not None for p in self._places.values())
        if bad and not self._episode:
            self._episode = True
            self._announced = {(p.key, p.cond or "") for p in bad}
            if all(p.best_effort for p in bad):
                log.warning("storage: %s", "; ".join(p.describe() for p in bad))
                return
            log.warning(
                "storage: %s: new files wait in the inbox until this clears; results already in the "
                "outbox keep going to the broker",
                "; ".join(p.describe() for p in bad),
            )
            return
        new = [p for p in bad if (p.key, p.cond or "") not in self._announced]
        for p in new:
            self._announced.add((p.key, p.cond or ""))
            log.info("storage: also %s", p.describe())
        if self._episode and not bad and not pending:
            self._episode = False
            self._announced = set()
            free = ", ".join(f"{p.label} {_mb(p.free)} free" for p in self._places.values())
            log.info("storage: all folders usable again (%s): taking new files", free)


def _short(exc: BaseException) -> str:
    """The innermost useful message: the OS or SQLite error, not our wrapping of it."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    if isinstance(inner, OSError):
        where = f" ({inner.filename})" if inner.filename else ""
        return f"{inner.strerror or inner}{where}"
    return str(inner)
