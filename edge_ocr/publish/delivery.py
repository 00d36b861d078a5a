"""End-to-end acknowledgement (``mqtt.delivery: end_to_end``): the device's side of it.

A broker's PUBACK says the *first* hop has the message. A mosquitto bridge acknowledges before the message
is on disk (mosquitto #1855), so a site broker killed -9 loses what it acked since its last snapshot;
only the fleet's ingester knows that a result is stored. After each commit it publishes, retained, on
``<prefix>/ack/<device_id>``: ``{"seq": N, "ids": [...]}``, the ids of this device's results the commit
holds (new rows and duplicates it absorbed) and, for monitoring, the highest outbox sequence stored.

- A result (a message on ``<p>/result/...``) is sent carrying its outbox sequence (`with_seq`). Its
  PUBACK marks it sent in the outbox; it is deleted when an acknowledgement names its id.
- **Ids, not "everything up to seq N".** A watermark of the highest sequence stored deletes results
  that were lost on the way: a site broker killed -9 loses its backlog, the device's later results get
  through, their higher sequence would cover the lost ones, and the device would delete them unstored
  (tests/test_fleet_faults.py measured exactly that: 60 of 600 lost). The ingester cannot compute a
  gap-free sequence either, since a device's sequence also numbers messages it never stores.
- A result sent and not acknowledged within ``ack_timeout_s`` is peeked again and republished with the
  same id and sequence. The ingester absorbs the duplicate by ``(device_id, id)`` and acknowledges it
  again: an acknowledgement missed while the device was offline (only the last one is retained) costs a
  republish, never a result.
- Everything else in the outbox (a region's retained state copy, which the ingester does not store) is
  deleted at PUBACK as in ``broker`` mode: no acknowledgement would ever name it.

Acknowledgements arrive on paho's network thread (`on_ack`) and are applied on the publisher thread
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
    """Which messages wait for the fleet, the acknowledgements received, and when a result is overdue."""

    def __init__(self, topics: Topics, ack_timeout_s: float) -> None:
        self.topics = topics
        self.ack_timeout_s = ack_timeout_s
        self._result_head = f"{topics.base}/result/"
        self._lock = threading.Lock()
        self._stored: list[str] = []  # ids the fleet acknowledged, not yet deleted here
        self._waiting: set[str] = set()  # msg_ids sent that wait for the fleet, not yet marked sent
        self.highest_stored: int | None = None  # the fleet's highest stored sequence (monitoring)
        self.republished = 0
        self.acknowledged = 0
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

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """paho's callback for the acknowledgement topic."""
        self.on_ack(bytes(message.payload))

    def on_ack(self, payload: bytes) -> None:
        """An acknowledgement (network thread); an unreadable one is logged and ignored."""
        try:
            doc = json.loads(payload)
            ids = doc["ids"]
            seq = doc.get("seq")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TypeError("ids is not a list of strings")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if payload:  # an empty retained payload clears the topic: nothing to say about it
                log.warning("MQTT: ignoring an unreadable acknowledgement on %s: %s", self.topics.ack, exc)
            return
        with self._lock:
            self._stored.extend(ids)
            if isinstance(seq, int) and (self.highest_stored is None or seq > self.highest_stored):
                self.highest_stored = seq

    def settle(self, outbox: Outbox, acked: Iterable[str]) -> list[str]:
        """Record PUBACKs and delete what the fleet stored; returns the acked ids that are done at PUBACK.

        Results among `acked` are marked sent (their rows stay); the rest go back to the caller to be
        deleted as in broker mode.
        """
        acked = list(acked)
        with self._lock:
            results = [m for m in acked if m in self._waiting]
            stored, self._stored = self._stored, []
        done = set(results)
        others = [m for m in acked if m not in done]
        try:
            if results:
                outbox.mark_sent(results)
                with self._lock:
                    self._waiting.difference_update(results)
            if stored:
                self.acknowledged += outbox.ack_many(stored)
        except BaseException:
            with self._lock:
                self._stored[:0] = stored  # applied again next round
            raise
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
