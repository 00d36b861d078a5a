"""The fleet's store: PostgreSQL tables, the exactly-once batch insert and what to acknowledge per device.

- ``edge_ocr_results``: one row per result, ``UNIQUE (device_id, id)``. A batch is one transaction with
  ``INSERT ... ON CONFLICT DO NOTHING``: a result sent again (a device's republish, a broker's redelivery
  after a crash, two ingesters both subscribed) is absorbed and counted, never a second row.
- What a device is told after the commit: the ids of its results the batch holds (new or absorbed) and
  the highest ``seq`` stored for it, read back in the same transaction: what is acknowledged is what is
  committed.
- ``edge_ocr_devices``: the retained status and health of each device and the time a message last came
  from it; ``edge_ocr_bridges``: the site brokers' bridge notifications (``1`` connected, ``0`` not);
  the view ``edge_ocr_device_view``: online, offline or unreachable, degraded and why, results stored.
- The tables are created if missing (``CREATE ... IF NOT EXISTS``); several ingesters may start at once,
  so creation runs under an advisory lock.

One `Store` has one connection and one owner thread (the consumer's writer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from edge_ocr.errors import StoreError

__all__ = ["BatchOutcome", "Row", "Store"]

log = logging.getLogger(__name__)

_SCHEMA_LOCK = 0x6564_6765  # pg_advisory_xact_lock key: "edge"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS edge_ocr_results (
    device_id text NOT NULL,
    id        text NOT NULL,
    seq       bigint,
    topic     text,
    message   jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, id)
);
CREATE INDEX IF NOT EXISTS edge_ocr_results_device_seq ON edge_ocr_results (device_id, seq);
CREATE TABLE IF NOT EXISTS edge_ocr_devices (
    device_id    text PRIMARY KEY,
    status       text,
    status_at    timestamptz,
    health       jsonb,
    health_at    timestamptz,
    last_seen_at timestamptz
);
CREATE TABLE IF NOT EXISTS edge_ocr_bridges (
    name     text PRIMARY KEY,
    state    text NOT NULL,
    state_at timestamptz NOT NULL
);
"""


# A device's state for a fleet view. Its retained status says "online" while its site broker holds the
# connection, and stays "online" on the core when the site broker or its bridge dies (the device's will
# is never fired there): so "online" and not heard from (a result or its periodic stats) for
# unreachable_after_s reads as unreachable.
_VIEW = """
CREATE OR REPLACE VIEW edge_ocr_device_view AS
SELECT device_id,
       CASE WHEN status = 'online'
                 AND (last_seen_at IS NULL OR last_seen_at < now() - interval '{unreachable}')
            THEN 'unreachable'
            ELSE coalesce(status, 'unknown') END AS state,
       coalesce(health->>'problem' = 'true', false) AS degraded,
       health->>'reason' AS degraded_reason,
       status, status_at, last_seen_at,
       (SELECT count(*) FROM edge_ocr_results r WHERE r.device_id = d.device_id) AS results
FROM edge_ocr_devices d
"""


@dataclass(frozen=True)
class Row:
    """One valid result, as the consumer parsed it."""

    device_id: str
    id: str
    seq: int | None
    topic: str
    message: dict[str, Any]


@dataclass(frozen=True)
class BatchOutcome:
    inserted: int
    duplicates: int
    ids: dict[str, list[str]]  # device_id -> the ids of its results this batch holds (new or absorbed)
    highest: dict[str, int]  # device_id -> highest seq stored, for the devices of the batch


class Store:
    """A connection to the fleet's database; `open()` creates the tables if missing."""

    def __init__(self, dsn: str, *, unreachable_after_s: float = 180.0) -> None:
        self.dsn = dsn
        self.unreachable_after_s = unreachable_after_s
        self._conn: psycopg.Connection[Any] | None = None

    def open(self) -> Store:
        try:
            self._conn = psycopg.connect(self.dsn, connect_timeout=10)
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                cur.execute(_SCHEMA)
                cur.execute(_VIEW.replace("{unreachable}", f"{float(self.unreachable_after_s)!r} seconds"))
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot open the fleet database ({_where(self.dsn)}): {exc}") from exc
        return self

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self.open()
        assert self._conn is not None
        return self._conn

    def insert(self, rows: Sequence[Row]) -> BatchOutcome:
        """Store `rows` in one transaction; returns what was new, what was absorbed, what to acknowledge."""
        devices = sorted({r.device_id for r in rows})
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                # One statement per row, sent in one pipeline (psycopg's executemany): no round trip
                # per row; rowcount is the sum, so what was absorbed is the rest.
                cur.executemany(
                    "INSERT INTO edge_ocr_results (device_id, id, seq, topic, message)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id, id) DO NOTHING",
                    [(r.device_id, r.id, r.seq, r.topic, Jsonb(r.message)) for r in rows],
                )
                inserted = max(0, cur.rowcount)
                cur.execute(
                    "SELECT device_id, max(seq) FROM edge_ocr_results WHERE device_id = ANY(%s)"
                    " GROUP BY device_id",
                    (devices,),
                )
                marks = {device: int(seq) for device, seq in cur.fetchall() if seq is not None}
                cur.execute(
                    "INSERT INTO edge_ocr_devices (device_id, last_seen_at) SELECT unnest(%s::text[]), now()"
                    " ON CONFLICT (device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at",
                    (devices,),
                )
        except psycopg.Error as exc:
            self._reset()
            raise StoreError(f"cannot store {len(rows)} results: {exc}") from exc
        ids: dict[str, list[str]] = {}
        for r in rows:
            ids.setdefault(r.device_id, []).append(r.id)
        return BatchOutcome(inserted, len(rows) - inserted, ids, marks)

    def device_state(self, device_id: str, kind: str, payload: bytes) -> None:
        """A device's retained status (text) or health (JSON) as it is now."""
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                if kind == "stats":  # only "heard from now": the stats themselves are not kept
                    cur.execute(
                        "INSERT INTO edge_ocr_devices (device_id, last_seen_at) VALUES (%s, now())"
                        " ON CONFLICT (device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at",
                        (device_id,),
                    )
                elif kind == "status":
                    cur.execute(
                        "INSERT INTO edge_ocr_devices (device_id, status, status_at) VALUES (%s, %s, now())"
                        " ON CONFLICT (device_id) DO UPDATE SET status = excluded.status,"
                        " status_at = excluded.status_at",
                        (device_id, payload.decode("utf-8", "replace")[:100]),
                    )
                else:
                    cur.execute(
                        "INSERT INTO edge_ocr_devices (device_id, health, health_at) VALUES (%s, %s, now())"
                        " ON CONFLICT (device_id) DO UPDATE SET health = excluded.health,"
                        " health_at = excluded.health_at",
                        (device_id, Jsonb(_json_or_text(payload))),
                    )
        except psycopg.Error as exc:
            self._reset()
            raise StoreError(f"cannot store the {kind} of {device_id}: {exc}") from exc

    def bridge_state(self, name: str, payload: bytes) -> None:
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO edge_ocr_bridges (name, state, state_at) VALUES (%s, %s, now())"
                    " ON CONFLICT (name) DO UPDATE SET state = excluded.state, state_at = excluded.state_at",
                    (name, payload.decode("utf-8", "replace")[:100]),
                )
        except psycopg.Error as exc:
            self._reset()
            raise StoreError(f"cannot store the state of bridge {name}: {exc}") from exc

    def _reset(self) -> None:
        """After an error the connection may be broken: the next call opens a new one."""
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _json_or_text(payload: bytes) -> Any:
    import json

    try:
        return json.loads(payload)
    except ValueError:
        return {"text": payload.decode("utf-8", "replace")}


def _where(dsn: str) -> str:
    """The DSN without credentials, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    return f"{parts.hostname or 'local socket'}:{parts.port or 5432}{parts.path}"
