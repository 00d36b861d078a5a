"""The no-broker publisher: prints each result as one JSON line on stdout.

With ``mqtt: null`` the outbox is still the place results are committed to; this publisher prints each
message once and marks it ``printed``. Messages stay in the outbox, so configuring a broker later sends
them too. To keep a long-running stdout-only daemon from stalling on a full outbox (back pressure),
when the outbox is full the oldest *printed* messages are deleted, as many as needed, and the number is
logged: they were delivered to the configured sink (stdout). Unprinted messages are never deleted.
Pass ``trim_when_full=False`` to keep everything and let back pressure apply instead.

Only payloads are printed (one line each; a payload that is not JSON is printed as a JSON string), so
``edge-ocr run | jq`` works; logs go to stderr. Retained copies (a camera region's state) are not
printed: their result was printed from its own topic.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from edge_ocr.errors import PublishError
from edge_ocr.outbox import Outbox
from edge_ocr.publish.topics import ConnectionState

__all__ = ["StdoutPublisher", "json_line"]

log = logging.getLogger(__name__)


def json_line(payload: bytes) -> str:
    """The payload as one line of JSON."""
    text = payload.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(text, ensure_ascii=False)


class StdoutPublisher:
    """Owns the thread that prints new outbox messages until `stop` is set."""

    def __init__(
        self,
        outbox: Outbox,
        stop: threading.Event,
        *,
        stream: TextIO | None = None,
        poll_s: float = 0.05,
        batch: int = 100,
        trim_when_full: bool = True,
    ) -> None:
        self.outbox = outbox
        self._stop = stop
        self._stream = stream
        self._poll_s = poll_s
        self._batch = batch
        self._trim = trim_when_full
        self._last_error: str | None = None
        self._since = time.time()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stdout-publisher", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> ConnectionState:
        # No broker: "connected" means the sink (stdout) works.
        return ConnectionState(
            connected=self._last_error is None,
            last_error=self._last_error,
            connects=0,
            attempts=0,
            inflight=0,
            since=self._since,
        )

    def publish_stats(self, stats: Mapping[str, Any]) -> bool:
        """Stats are logged (at debug), not printed: stdout carries results only."""
        log.debug("stats %s", json.dumps(stats, separators=(",", ":")))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._drain_safely()
        self._drain_safely()  # what was committed while stopping

    def _drain_safely(self) -> None:
        try:
            while self._drain() == self._batch:
                pass
        except (PublishError, OSError) as exc:
            if str(exc) != self._last_error:
                log.error("stdout publisher: %s; results stay in the outbox", exc)
            self._last_error = str(exc)

    def _drain(self) -> int:
        msgs = self.outbox.peek(self._batch, unprinted_only=True)
        if msgs:
            stream = self._stream or sys.stdout  # looked up late: tests and daemons may replace it
            for msg in msgs:
                # A retained message is the broker's latest-value copy of a result already printed
                # from its own topic (a camera region's state): printed, every reading came twice.
                if not msg.retain:
                    stream.write(json_line(msg.payload) + "\n")
            stream.flush()
            self.outbox.mark_printed(m.msg_id for m in msgs)
            self._last_error = None
        if self._trim and self.outbox.is_full():
            n = self.outbox.trim_printed()
            if n:
                log.info("outbox full without a broker: deleted the %d oldest results already printed", n)
        return len(msgs)
