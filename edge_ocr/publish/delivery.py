"""End-to-end acknowledgement (``mqtt.delivery: end_to_end``): the device side of the fleet's watermark.

A broker's PUBACK says the *first* hop has the message. A mosquitto bridge acknowledges before the message
is on disk (mosquitto #1855), so a site broker killed -9 loses what it acked since its last snapshot;
only the fleet's ingester knows that a result is stored. It publishes, retained, the highest outbox
sequence of each device it committed (``<prefix>/ack/<device_id>``, ``{"seq": N}``). Here:

- A result (a message on ``<p>/result/...``) is sent carrying its outbox sequence (`with_seq`). Its
  PUBACK marks it sent in the outbox; it is deleted once a watermark covers its sequence.
- Everything else in the outbox (a region's retained state copy, which the ingester does not store) is
  deleted at PUBACK as in ``broker`` mode: a watermark never covers it, and waiting for one would
  republish it forever.
- A result sent and not covered within ``ack_timeout_s`` is peeked again and republished with the same
  id and sequence; the ingester absorbs the duplicate by ``(device_id, id)``.
- The watermark only ever grows here: a retained older one (a broker restored from an old snapshot)
  must not hold back deletions already done. A new outbox starts its sequence far beyond any old one
  (see `edge_ocr.outbox`), so a larger watermark of a replaced outbox covers nothing of the new.

The watermark arrives on paho's network thread (`on_watermark`) and is applied on the publisher thread
(`settle`), keeping fsyncs off the network thread. The object has one owner, the publisher.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from edge_ocr.outbox import Message, Outbox
from edge_ocr.publish.topics import Topics
from edge_ocr.results import with_seq

__all__ = ["EndToEnd", "to_send", "worth_peeking"]

log = logging.getLogger(__name__)


class EndToEnd:
    """Which messages wait for the fleet, the last watermark, and when a result is overdue."""

    def __init__(self, topics: Topics, ack_timeout_s: float) -> None:
        self.topics = topics
        self.ack_timeout_s = ack_timeout_s
        self._result_head = f"{topics.base}/result/"
        self._lock = threading.Lock()
        self._watermark: int | None = None
        self._applied: int | None = None  # the watermark at the last `settle` that deleted with it
        self._waiting: set[str] = set()  # msg_ids sent that wait for the watermark, not yet marked sent
        self.republished = 0
        self._next_overdue_check = 0.0

    def waits_for_fleet(self, msg: Message) -> bool:
        return msg.topic.startswith(self._result_head)

    def payload(self, msg: Message) -> bytes:
        """What to send for `msg`: a result carries its outbox sequence."""
        if not self.waits_for_fleet(msg):
            return msg.payload
        if msg.sent_at is not None:
            self.republished += 1
            log.info(
                "MQTT: result %s (seq %d) not acknowledged by the fleet within %gs; publishing it again",
                msg.msg_id,
                msg.seq,
                self.ack_timeout_s,
            )
        with self._lock:
            self._waiting.add(msg.msg_id)
        return with_seq(msg.payload, msg.seq)

    def sent_before(self) -> float:
        """Results sent before this time and still waiting are due again (`Outbox.peek(sent_before=)`)."""
        return time.time() - self.ack_timeout_s

    def overdue_check_due(self) -> bool:
        """True about once a second: whether to look for overdue results although nothing new waits.

        Overdue results are found by a query; the publisher polls every few milliseconds while busy.
        """
        now = time.monotonic()
        if now < self._next_overdue_check:
            return False
        self._next_overdue_check = now + min(1.0, self.ack_timeout_s / 4)
        return True

    @property
    def watermark(self) -> int | None:
        with self._lock:
            return self._watermark

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """paho's callback for the watermark topic."""
        self.on_watermark(bytes(message.payload))

    def on_watermark(self, payload: bytes) -> None:
        """A watermark message (network thread); an unreadable one is logged and ignored."""
        try:
            seq = json.loads(payload)["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise TypeError(f"seq is {type(seq).__name__}")
        except (ValueError, KeyError, TypeError) as exc:
            if payload:  # an empty retained payload clears the topic: nothing to say about it
                log.warning("MQTT: ignoring an unreadable watermark on %s: %s", self.topics.ack, exc)
            return
        with self._lock:
            if self._watermark is None or seq > self._watermark:
                self._watermark = seq

    def settle(self, outbox: Outbox, acked: Iterable[str]) -> list[str]:
        """Record PUBACKs and apply the watermark; returns the acked ids that are done at PUBACK.

        Results among `acked` are marked sent (their rows stay); the rest go back to the caller to be
        deleted as in broker mode. Then the rows the watermark covers are deleted.
        """
        acked = list(acked)
        with self._lock:
            results = [m for m in acked if m in self._waiting]
            watermark = self._watermark
        done = set(results)
        others = [m for m in acked if m not in done]
        if results:
            outbox.mark_sent(results)
            with self._lock:
                self._waiting.difference_update(results)
        if watermark is not None and (results or watermark != self._applied):
            removed = outbox.ack_through(watermark)
            self._applied = watermark
            if removed:
                log.debug("MQTT: the fleet acknowledged %d results (through seq %d)", removed, watermark)
        return others


def to_send(outbox: Outbox | None, e2e: EndToEnd | None) -> int:
    """Messages not yet handed to the broker (end_to_end: not counting those awaiting the fleet)."""
    if outbox is None:
        return 0
    return outbox.depth() - (outbox.unacked() if e2e is not None else 0)


def worth_peeking(outbox: Outbox | None, e2e: EndToEnd | None, busy: int) -> bool:
    """Whether the outbox may hold something to send: new messages, or (about once a second) overdue ones."""
    if to_send(outbox, e2e) > busy:
        return True
    return e2e is not None and e2e.overdue_check_due()
