"""The durable outbox: results wait in SQLite until the broker acknowledged them.

paho keeps unacknowledged QoS 1 messages in RAM only; a reboot would lose them. Here a result is
committed to disk before its file leaves the inbox, and deleted only after the broker's PUBACK.

Design decisions:

- **WAL with synchronous=FULL.** In WAL mode ``NORMAL`` keeps the database consistent but may lose the
  last transactions on power loss, and the daemon moves a file out of the inbox right after `put`
  returns: a lost commit would be a lost result. ``FULL`` costs one fsync per commit, which is small next
  to OCR time; acks are batched (`ack_many`) so draining a backlog is not one fsync per message.
- **Idempotent ids.** `put` ignores a message whose id is already waiting, so a file processed again
  after a crash does not queue a second copy. Once a message was acknowledged and deleted, the same id
  may be put again (a republish); consumers drop duplicates by id.
- **Bounded, never silent.** `is_full` tells producers to stop taking work (back pressure). `put` on a
  full outbox raises `OutboxFullError` unless ``force=True``: a result already computed for a file
  being finished (e.g. at shutdown) may exceed the bound rather than be lost.
- **A full disk is a condition, not a crash.** SQLite may roll a transaction back by itself on
  SQLITE_FULL, so a failed write rolls back only if a transaction is still open (a second error
  would hide the first). Every disk error is a `PublishError` whose cause is the sqlite3 error, for
  the daemon's storage guard to read. Opening an existing, current outbox writes nothing.
- **One connection and a lock**: every method is thread-safe; the counters that make `depth`,
  `size_bytes` and `is_full` O(1) are kept under the same lock. One process owns an outbox file.
- **Bookkeeping**: the ``processed`` table maps a file's sha256 to its last result (id, topic, payload)
  for the ``duplicates: skip|republish`` policy; it is written in the same transaction as the result.
- **printed**: the stdout publisher marks what it printed; the MQTT publisher ignores the mark.
- **Sent, not yet acknowledged** (``mqtt.delivery: end_to_end``): the broker's PUBACK only marks a
  result sent (`mark_sent`); it is deleted (`ack_many`) when the fleet's ingester names it as stored.
  Those rows still count against the bounds, so a fleet that stops acknowledging brings back pressure,
  not a silent drop; `unacked` counts them for the metrics.
- **Sequences never go back.** A result carries its sequence to the fleet's table, where
  ``(device_id, seq)`` orders a device's results. A new outbox starts its sequence at the microseconds
  since the epoch, so an outbox deleted and made again does not reuse numbers already stored; reaching
  the old file's numbers would take more than a million results a second.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.errors import PublishError

__all__ = ["Message", "Outbox", "OutboxFullError", "OutboxStats", "ProcessedRecord"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_SIZE = "LENGTH(payload) + LENGTH(CAST(topic AS BLOB))"  # bytes a message counts against max_bytes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id     TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    qos        INTEGER NOT NULL,
    retain     INTEGER NOT NULL,
    created_at REAL NOT NULL,
    printed    INTEGER NOT NULL DEFAULT 0,
    sent_at    REAL
);
CREATE TABLE IF NOT EXISTS processed (
    sha256       TEXT PRIMARY KEY,
    msg_id       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    processed_at REAL NOT NULL
);
"""


class OutboxFullError(PublishError):
    """The outbox reached max_messages or max_bytes; the caller should wait (back pressure)."""

    remedy = "wait for the broker to take messages, or raise outbox.max_messages / outbox.max_bytes"


@dataclass(frozen=True)
class Message:
    """One waiting message; `sent_at`: the broker took it, the fleet has not yet acknowledged it."""

    msg_id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float
    seq: int = 0
    sent_at: float | None = None

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic.encode("utf-8"))


@dataclass(frozen=True)
class ProcessedRecord:
    """The last result stored for a file content (sha256)."""

    sha256: str
    msg_id: str
    topic: str
    payload: bytes
    processed_at: float


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    size_bytes: int
    max_messages: int
    max_bytes: int
    unacked: int = 0  # sent (PUBACK), not yet acknowledged by the fleet (end_to_end only)

    @property
    def full(self) -> bool:
        return self.depth >= self.max_messages or self.size_bytes >= self.max_bytes


class Outbox:
    """A bounded, durable, thread-safe FIFO of messages keyed by a stable id."""

    def __init__(self, path: Path, *, max_messages: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise PublishError(
                    f"outbox {self.path} has schema {version}, newer than this edge-ocr ({SCHEMA_VERSION})",
                    remedy="upgrade edge-ocr, or move the outbox away (its messages would be lost)",
                )
            if version < SCHEMA_VERSION:
                # Only a new or older file is written to at open: an existing, current outbox opens on a
                # full disk, so the results it holds can still be sent.
                self._migrate()
            depth, size, unacked = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({_SIZE}), 0), COUNT(sent_at) FROM messages"
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise PublishError(f"cannot open the outbox {self.path}: {exc}", remedy=_DISK_REMEDY) from exc
        self._depth: int = depth
        self._bytes: int = size
        self._unacked: int = unacked
        if depth:
            log.info("outbox %s holds %d messages (%d bytes) from before", self.path, depth, size)

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "sent_at" not in columns:  # a version 1 outbox: its waiting messages are kept
            self._db.execute("ALTER TABLE messages ADD COLUMN sent_at REAL")
        if self._db.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'messages'").fetchone() is None:
            start = time.time_ns() // 1000
            self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('messages', ?)", (start,))
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------------- messages

    def put(
        self,
        msg_id: str,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        sha256: str | None = None,
        force: bool = False,
    ) -> bool:
        """Store a message; True if stored, False if a message with this id is already waiting.

        With `sha256`, the file's bookkeeping record is written in the same transaction. Raises
        OutboxFullError when full (unless `force`), PublishError when the disk refuses.
        """
        size = len(payload) + len(topic.encode("utf-8"))
        now = time.time()
        with self._lock:
            try:
                exists = self._db.execute("SELECT 1 FROM messages WHERE msg_id = ?", (msg_id,)).fetchone()
                if exists:
                    if sha256 is not None:
                        self._remember(sha256, msg_id, topic, payload, now)
                    return False
                if not force and self._full():
                    raise OutboxFullError(
                        f"outbox full ({self._depth} messages, {self._bytes} bytes; "
                        f"limits {self.max_messages}, {self.max_bytes})"
                    )
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "INSERT INTO messages (msg_id, topic, payload, qos, retain, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (msg_id, topic, payload, qos, int(retain), now),
                    )
                    if sha256 is not None:
                        self._remember(sha256, msg_id, topic, payload, now)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                raise PublishError(
                    f"cannot store message {msg_id} in {self.path}: {exc}", remedy=_DISK_REMEDY
                ) from exc
            self._depth += 1
            self._bytes += size
            return True

    def peek(
        self,
        n: int,
        *,
        exclude: Iterable[str] = (),
        unprinted_only: bool = False,
        sent_before: float | None = None,
    ) -> list[Message]:
        """The oldest `n` waiting messages, skipping the ids in `exclude` (e.g. already in flight).

        With `sent_before`, a message marked sent is only returned once it was sent before that time
        (its acknowledgement is overdue and it is to be published again).
        """
        excluded = set(exclude)
        conditions: list[str] = []
        params: list[object] = []
        if unprinted_only:
            conditions.append("printed = 0")
        if sent_before is not None:
            conditions.append("(sent_at IS NULL OR sent_at < ?)")
            params.append(sent_before)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        out: list[Message] = []
        with self._lock:
            try:
                # Fetch a little more than n so the excluded ids (at most the in-flight window) do not
                # need a NOT IN clause with one parameter per id.
                rows = self._db.execute(
                    f"SELECT msg_id, topic, payload, qos, retain, created_at, seq, sent_at FROM messages"
                    f" {where} ORDER BY seq LIMIT ?",
                    (*params, n + len(excluded)),
                ).fetchall()
            except sqlite3.Error as exc:
                raise PublishError(f"cannot read the outbox {self.path}: {exc}", remedy=_DISK_REMEDY) from exc
        for msg_id, topic, payload, qos, retain, created_at, seq, sent_at in rows:
            if msg_id in excluded:
                continue
            out.append(Message(msg_id, topic, bytes(payload), qos, bool(retain), created_at, seq, sent_at))
            if len(out) >= n:
                break
        return out

    def ack(self, msg_id: str) -> bool:
        """Delete a message the broker acknowledged; False if it was not waiting."""
        return self.ack_many([msg_id]) == 1

    def ack_many(self, msg_ids: Iterable[str]) -> int:
        """Delete several acknowledged messages in one transaction; returns how many were waiting."""
        ids = list(dict.fromkeys(msg_ids))
        if not ids:
            return 0
        removed = freed = unacked = 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for chunk in _chunks(ids, 500):
                        marks = ",".join("?" * len(chunk))
                        rows = self._db.execute(
                            f"SELECT COUNT(*), COALESCE(SUM({_SIZE}), 0), COUNT(sent_at) FROM messages"
                            f" WHERE msg_id IN ({marks})",
                            chunk,
                        ).fetchone()
                        self._db.execute(f"DELETE FROM messages WHERE msg_id IN ({marks})", chunk)
                        removed += rows[0]
                        freed += rows[1]
                        unacked += rows[2]
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                raise PublishError(
                    f"cannot delete acknowledged messages in {self.path}: {exc}", remedy=_DISK_REMEDY
                ) from exc
            self._depth -= removed
            self._bytes -= freed
            self._unacked -= unacked
        return removed

    def mark_sent(self, msg_ids: Iterable[str], now: float | None = None) -> int:
        """Record that the broker took these messages (end_to_end); returns how many were waiting.

        A message sent again gets the new time: its acknowledgement is awaited afresh.
        """
        ids = list(dict.fromkeys(msg_ids))
        when = time.time() if now is None else now
        found = newly = 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for chunk in _chunks(ids, 500):
                        marks = ",".join("?" * len(chunk))
                        total, fresh = self._db.execute(
                            "SELECT COUNT(*), COUNT(*) - COUNT(sent_at) FROM messages"
                            f" WHERE msg_id IN ({marks})",
                            chunk,
                        ).fetchone()
                        self._db.execute(
                            f"UPDATE messages SET sent_at = ? WHERE msg_id IN ({marks})", (when, *chunk)
                        )
                        found += total
                        newly += fresh
                    self._db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as exc:
                raise PublishError(
                    f"cannot mark messages sent in {self.path}: {exc}", remedy=_DISK_REMEDY
                ) from exc
            self._unacked += newly
        return found

    def mark_printed(self, msg_ids: Iterable[str]) -> None:
        """Record that these messages were written to stdout (they stay waiting for a broker)."""
        ids = list(msg_ids)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    self._db.execute(f"UPDATE messages SET printed = 1 WHERE msg_id IN ({marks})", chunk)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise PublishError(f"cannot update the outbox {self.path}: {exc}") from exc

    def trim_printed(self) -> int:
        """While full, delete the oldest messages already printed; returns how many were deleted.

        Only for no-broker mode, where stdout is the sink: those results were delivered there.
        """
        with self._lock:
            if not self._full():
                return 0
            over_n = max(0, self._depth - self.max_messages + 1)
            over_b = max(0, self._bytes - self.max_bytes + 1)
            rows = self._db.execute(
                f"SELECT msg_id, {_SIZE} FROM messages WHERE printed = 1 ORDER BY seq"
            ).fetchall()
        victims: list[str] = []
        freed = 0
        for msg_id, size in rows:
            if len(victims) >= over_n and freed >= over_b:
                break
            victims.append(msg_id)
            freed += size
        return self.ack_many(victims)

    # ------------------------------------------------------------------------------------- counters

    def depth(self) -> int:
        with self._lock:
            return self._depth

    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def unacked(self) -> int:
        """Messages sent to the broker and not yet acknowledged by the fleet (end_to_end)."""
        with self._lock:
            return self._unacked

    def is_full(self) -> bool:
        with self._lock:
            return self._full()

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(self._depth, self._bytes, self.max_messages, self.max_bytes, self._unacked)

    def _full(self) -> bool:
        return self._depth >= self.max_messages or self._bytes >= self.max_bytes

    # ------------------------------------------------------------------------------------- bookkeeping

    def remember(self, sha256: str, msg_id: str, topic: str, payload: bytes) -> None:
        """Record the last result of a file content (see `put(sha256=...)` to do it atomically)."""
        with self._lock:
            try:
                self._remember(sha256, msg_id, topic, payload, time.time())
            except sqlite3.Error as exc:
                raise PublishError(
                    f"cannot write bookkeeping in {self.path}: {exc}", remedy=_DISK_REMEDY
                ) from exc

    def lookup(self, sha256: str) -> ProcessedRecord | None:
        """The last result recorded for this sha256, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, msg_id, topic, payload, processed_at FROM processed WHERE sha256 = ?",
                (sha256,),
            ).fetchone()
        if row is None:
            return None
        return ProcessedRecord(row[0], row[1], row[2], bytes(row[3]), row[4])

    def _remember(self, sha256: str, msg_id: str, topic: str, payload: bytes, now: float) -> None:
        self._db.execute(
            "INSERT INTO processed (sha256, msg_id, topic, payload, processed_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(sha256) DO UPDATE SET msg_id = excluded.msg_id, topic = excluded.topic,"
            " payload = excluded.payload, processed_at = excluded.processed_at",
            (sha256, msg_id, topic, payload, now),
        )

    # ------------------------------------------------------------------------------------- lifecycle

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DISK_REMEDY = "check free space and permissions of state_dir"


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
