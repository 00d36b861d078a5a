"""The ingester's counters and its own HTTP endpoint: ``/healthz`` and ``/metrics`` (Prometheus).

- ``/healthz``: 200 while the broker and the database both answer, else 503 with the reason, as JSON.
- ``/metrics``: rows stored, duplicates absorbed, messages refused by reason, store errors, rows/s
  over the last minute, the lag (a result's processing on its device to its commit) and the time a
  result waited inside the ingester, whether the broker is connected.

A standard-library HTTP server on its own thread (the ingester needs no web framework); counters are
written by the consumer's threads under one lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["HealthServer", "IngestMetrics"]

log = logging.getLogger(__name__)

_RATE_WINDOW_S = 60.0


class IngestMetrics:
    """What the ingester counts; read by /metrics, /healthz and the tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connected = False
        self.received = 0
        self.inserted = 0
        self.duplicates = 0
        self.store_errors = 0
        self.rejections: Counter[str] = Counter()
        self.lag_s: float | None = None
        self.wait_s: float | None = None
        self.store_ok = True
        self._commits: deque[tuple[float, int]] = deque()

    def store_failed(self) -> None:
        with self._lock:
            self.store_errors += 1
            self.store_ok = False

    def rejected(self, reason: str) -> None:
        with self._lock:
            self.rejections[reason] += 1

    def committed(self, inserted: int, duplicates: int, lag_s: float | None, wait_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.inserted += inserted
            self.duplicates += duplicates
            self.lag_s, self.wait_s, self.store_ok = lag_s, wait_s, True
            self._commits.append((now, inserted))
            while self._commits and self._commits[0][0] < now - _RATE_WINDOW_S:
                self._commits.popleft()

    def rows_per_s(self) -> float:
        with self._lock:
            if not self._commits:
                return 0.0
            span = max(1.0, min(_RATE_WINDOW_S, time.monotonic() - self._commits[0][0]))
            return sum(n for _, n in self._commits) / span

    def snapshot(self) -> dict[str, Any]:
        rate = self.rows_per_s()
        with self._lock:
            return {
                "connected": self.connected,
                "received": self.received,
                "inserted": self.inserted,
                "duplicates": self.duplicates,
                "rejected": dict(self.rejections),
                "store_errors": self.store_errors,
                "rows_per_s": rate,
                "lag_s": self.lag_s,
                "wait_s": self.wait_s,
            }

    def collect(self) -> Iterator[Metric]:
        st = self.snapshot()
        for name, doc, key in (
            ("edge_ocr_ingest_received_total", "Valid results received.", "received"),
            ("edge_ocr_ingest_rows_total", "Results stored (new rows).", "inserted"),
            ("edge_ocr_ingest_duplicates_total", "Results received again and absorbed.", "duplicates"),
            ("edge_ocr_ingest_store_errors_total", "Batches the database refused (retried).", "store_errors"),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], st[key])
            yield c
        rejected = CounterMetricFamily(
            "edge_ocr_ingest_rejected_total", "Messages refused (never stored), by reason.", labels=["reason"]
        )
        for reason, n in sorted(st["rejected"].items()):
            rejected.add_metric([reason], n)
        yield rejected
        gauges = [
            ("edge_ocr_ingest_rows_per_second", "Rows stored per second over the last minute.", "rows_per_s"),
            ("edge_ocr_ingest_lag_seconds", "A result's processing on its device to its commit.", "lag_s"),
            ("edge_ocr_ingest_wait_seconds", "How long the last batch waited in the ingester.", "wait_s"),
            ("edge_ocr_ingest_broker_connected", "1 while the broker accepts the ingester.", "connected"),
        ]
        for name, doc, key in gauges:
            value = st[key]
            if value is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], float(value))
                yield g


class HealthServer:
    """/healthz and /metrics on `address`, served until `close()`."""

    def __init__(self, address: tuple[str, int], metrics: IngestMetrics) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)  # type: ignore[arg-type]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                if self.path == "/metrics":
                    self._send(200, generate_latest(registry), "text/plain; version=0.0.4")
                elif self.path == "/healthz":
                    st = metrics.snapshot()
                    reason = None if st["connected"] else "not connected to the broker"
                    if reason is None and not metrics.store_ok:
                        reason = "the database refuses writes"
                    body = json.dumps({"ok": reason is None, "reason": reason, **st}).encode()
                    self._send(200 if reason is None else 503, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("http: " + format, *args)

        self.server = ThreadingHTTPServer(address, Handler)
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="ingest-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
