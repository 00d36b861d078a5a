"""The history of camera readings: every published region message, kept in SQLite for charts and CSV.

The outbox holds a message until the broker took it; the history keeps what was published, valid or
rejected, for a bounded time after, so the page can chart a meter and a user can download its CSV
(`GET /api/history`). It lives in ``<state_dir>/history.sqlite3`` and survives restarts.

Design decisions:

- **Best effort, the outbox first.** A reading that cannot be kept in the history is still published.
  Every disk error is a `HistoryError` whose cause is the sqlite3 error, for the storage guard to read
  (the daemon reports it as a degraded history and skips writes during the backoff); nothing here
  holds a reading back.
- **WAL with synchronous=NORMAL**, not the outbox's FULL: a power cut may lose the last seconds of
  history but never corrupts it, and the camera's analysis thread does not wait for an fsync per frame.
  A frame's messages are one transaction.
- **Bounded by age and by size.** Readings older than ``retain_days`` are deleted at the first write
  after opening, then at most once a minute; when the pages in use pass ``max_bytes`` the oldest
  readings are deleted down to 90% of it (so it does not prune at every insert). SQLite reuses the
  freed pages: the file stays at about ``max_bytes`` and never needs a VACUUM (which would need as
  much free space again).
- **Readers have their own connection** (`query`), opened per call: WAL lets them read while the
  camera writes, and a long CSV export never holds the writer's lock.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_ocr.errors import PublishError

__all__ = ["COLUMNS", "History", "HistoryError", "Reading"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    t          REAL NOT NULL,
    source     TEXT NOT NULL,
    region     TEXT NOT NULL,
    text       TEXT NOT NULL,
    value      REAL,
    valid      INTEGER NOT NULL,
    reason     TEXT,
    confidence REAL,
    unit       TEXT,
    msg_id     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_by_region ON readings (source, region, t);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (t);
"""
# The columns a reading has, in the CSV's order.
COLUMNS = ("time", "source", "region", "text", "value", "valid", "reason", "confidence", "unit")
PRUNE_EVERY_S = 60.0
_SIZE_TARGET = 0.9  # prune by size down to this share of max_bytes
_REMEDY = "check free space and permissions of state_dir; readings are still published"


class HistoryError(PublishError):
    """The history database cannot be written or read (a full or read-only state_dir, a newer file)."""

    remedy = _REMEDY


@dataclass(frozen=True)
class Reading:
    """One published reading of a camera region."""

    t: float  # captured at, seconds since the epoch
    source: str
    region: str
    text: str
    value: float | None
    valid: bool
    reason: str | None
    confidence: float | None
    unit: str | None


class History:
    """The bounded, thread-safe store of published readings; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        retain_days: float = 30.0,
        max_bytes: int = 50 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.retain_days = retain_days
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._pruned_at = -math.inf
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"history {self.path} has schema {version}, newer than this edge-ocr ({SCHEMA_VERSION})",
                    remedy="upgrade edge-ocr, or move the history file away (its readings would be lost)",
                )
            if version < SCHEMA_VERSION:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"cannot open the history {self.path}: {exc}") from exc

    # ------------------------------------------------------------------------------------- writing

    def add(self, source: str, captured_at: float, messages: Iterable[Mapping[str, Any]]) -> int:
        """Keep a frame's published region messages (one transaction); returns how many were kept.
        Raises HistoryError when the disk refuses (nothing of the frame is kept then)."""
        rows = [
            (
                captured_at, source, str(m["region"]), str(m.get("text") or ""), _number(m.get("value")),
                int(bool(m.get("valid"))), m.get("reason"), _number(m.get("confidence")), m.get("unit"),
                str(m.get("id") or ""),
            )
            for m in messages
        ]  # fmt: skip
        if not rows:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO readings (t, source, region, text, value, valid, reason, confidence,"
                        " unit, msg_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                self._prune_if_due()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot keep readings of {source} in {self.path}: {exc}") from exc
        return len(rows)

    def prune(self) -> int:
        """Delete what is past the retention (age, then size) now; returns how many readings went."""
        with self._lock:
            try:
                return self._prune()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot prune the history {self.path}: {exc}") from exc

    def _prune_if_due(self) -> None:
        now = self._clock()
        if now - self._pruned_at >= PRUNE_EVERY_S or self._used_bytes() > self.max_bytes:
            self._prune()

    def _prune(self) -> int:
        self._pruned_at = self._clock()
        gone = self._delete("DELETE FROM readings WHERE t < ?", (self._pruned_at - self.retain_days * 86400,))
        target = int(self.max_bytes * _SIZE_TARGET)
        # Deleting the oldest rows frees whole pages of the table and of its time-ordered indexes; a few
        # rounds reach the target even when a page is shared by old and new rows.
        for _ in range(8):
            used = self._used_bytes()
            if used <= target:
                break
            count = int(self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
            if count == 0:
                break
            n = max(1, math.ceil(count * (used - target) / used))
            gone += self._delete(
                "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings ORDER BY seq LIMIT ?)", (n,)
            )
        if gone:
            log.debug("history: %d old readings deleted (%d bytes in use)", gone, self._used_bytes())
        return gone

    def _delete(self, sql: str, args: tuple[Any, ...]) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            n = self._db.execute(sql, args).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return int(n)

    def _used_bytes(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page

    def size_bytes(self) -> int:
        """Bytes of the database in use (without the pages free for reuse)."""
        with self._lock:
            return self._used_bytes()

    # ------------------------------------------------------------------------------------- reading

    def query(
        self,
        *,
        source: str | None = None,
        region: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 10_000,
    ) -> tuple[list[Reading], bool]:
        """The readings that match, oldest first: the newest `limit` of them, and whether there were more."""
        where, args = [], []
        for column, op, value in (("source", "=", source), ("region", "=", region),
                                  ("t", ">=", since), ("t", "<=", until)):  # fmt: skip
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        sql = (
            "SELECT t, source, region, text, value, valid, reason, confidence, unit FROM readings"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY t DESC, seq DESC LIMIT ?"
        )
        try:
            db = sqlite3.connect(self.path, timeout=10)
            try:
                rows = db.execute(sql, (*args, limit + 1)).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the history {self.path}: {exc}") from exc
        more = len(rows) > limit
        out = [
            Reading(t, src, reg, text, value, bool(valid), reason, conf, unit)
            for t, src, reg, text, value, valid, reason, conf, unit in reversed(rows[:limit])
        ]
        return out, more

    # ------------------------------------------------------------------------------------- lifecycle

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
