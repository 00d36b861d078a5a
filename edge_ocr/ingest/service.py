"""`edge-ocr ingest` as a process: the store, the consumer and the HTTP endpoint, one stop event.

Start order: the database (its tables created if missing: a wrong DSN fails the start, before the broker
is asked for anything), the HTTP endpoint, then the consumer. SIGTERM and SIGINT set the stop event;
shutdown goes in reverse order. Results the writer had not committed stay unacknowledged in the
broker's session and come again at the next start.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from edge_ocr.ingest.config import IngestConfig
from edge_ocr.ingest.consumer import Ingester
from edge_ocr.ingest.health import HealthServer, IngestMetrics
from edge_ocr.ingest.store import Store

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(cfg: IngestConfig, stop: threading.Event | None = None) -> int:
    """Run until `stop` is set (or SIGTERM / SIGINT); returns the exit code."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("ingest: %s received; stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    store = Store(cfg.dsn, unreachable_after_s=cfg.unreachable_after_s).open()
    metrics = IngestMetrics()
    http = HealthServer(cfg.http_address, metrics) if cfg.http_address else None
    try:
        if http is not None:
            http.start()
            log.info("ingest: /healthz and /metrics on http://%s:%d", *http.address[:2])
        ingester = Ingester(cfg, store, stop, metrics)
        ingester.start()
        try:
            stop.wait()
        finally:
            ingester.join(10)
    finally:
        if http is not None:
            http.close()
        store.close()
    return 0
