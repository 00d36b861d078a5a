"""The ingester's MQTT side: a persistent session, results validated, committed, then acknowledged.

- **Nothing acknowledged before it is committed.** paho's manual acks: a result's PUBACK goes to the
  broker only after the transaction holding it committed. An ingester killed -9 leaves its results
  unacknowledged in its persistent session (``clean_session false``, a fixed client id), and the broker
  sends them again when it is back. The same holds for the device: its acknowledgement (retained,
  ``<prefix>/ack/<device_id>``, ``{"seq": highest stored, "ids": [...]}``) is published after the commit
  and names only the ids the commit holds.
- **Several ingesters** share the results through ``$share/<group>/<prefix>/+/result/#`` (mosquitto
  2.0 supports shared subscriptions for MQTT 3.1.1 clients; other brokers must be checked). With
  ``share_group: none`` each ingester takes everything and the database absorbs the duplicates. Status,
  health and bridge topics are retained and small, stats are periodic: every ingester takes them all (a
  device's stats only mark it as heard from).
- **A bad message is refused, never stored**: not JSON, not an object, no id or device_id, a device_id
  that is not the topic's, wrong types. It is counted by reason, logged, and acknowledged (sending it
  again would not make it valid).
- **One writer thread** owns the database connection; paho's network thread only parses and queues. A
  database that refuses a batch keeps it: the batch is retried with backoff, still unacknowledged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_ocr.errors import StoreError
from edge_ocr.ingest.config import IngestConfig
from edge_ocr.ingest.health import IngestMetrics
from edge_ocr.ingest.store import Row, Store
from edge_ocr.publish.topics import (
    ack_topic,
    device_of,
    health_filter,
    result_filter,
    stats_filter,
    status_filter,
)
from edge_ocr.results import problems

__all__ = ["BRIDGE_FILTER", "Ingester", "parse_result"]

log = logging.getLogger(__name__)

# mosquitto's default bridge notification topic (notification_topic unset): "1" up, "0" down.
BRIDGE_FILTER = "$SYS/broker/connection/+/state"


@dataclass(frozen=True)
class _Item:
    mid: int
    qos: int
    received: float
    row: Row | None = None  # a result
    kind: str = ""  # or a device's "status" / "health", or a "bridge" state
    name: str = ""
    payload: bytes = b""


def parse_result(prefix: str, topic: str, payload: bytes) -> Row | str:
    """The row to store for a result message, or why it is refused."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    reason = problems(msg)
    if reason is not None:
        return reason
    if msg["device_id"] != device_of(prefix, topic):
        return "device_id is not the topic's device"
    return Row(msg["device_id"], msg["id"], msg.get("seq"), topic, msg)


class Ingester:
    """Owns the MQTT client and the writer thread, until `stop` is set."""

    def __init__(
        self, cfg: IngestConfig, store: Store, stop: threading.Event, metrics: IngestMetrics
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.metrics = metrics
        self._stop = stop
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._results = result_filter(cfg.topic_prefix)
        group = cfg.share_group
        self._subscriptions = [
            (f"$share/{group}/{self._results}" if group else self._results, 1),
            (status_filter(cfg.topic_prefix), 1),
            (health_filter(cfg.topic_prefix), 1),
            (BRIDGE_FILTER, 1),
            # QoS 0 and periodic: only to tell a device still heard from one whose broker went away.
            (stats_filter(cfg.topic_prefix), 0),
        ]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, clean_session=False)
        client.manual_ack_set(True)
        client.suppress_exceptions = True
        client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        self._thread = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)

    def start(self) -> None:
        log.info("ingest: connecting to %s as %r", self.cfg.mqtt, self.cfg.client_id)
        self.client.connect_async(self.cfg.mqtt_host, self.cfg.mqtt_port, self.cfg.keepalive)
        self.client.loop_start()
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------------------ network thread

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("ingest: broker %s refused the connection: %s", self.cfg.mqtt, rc)
            return
        self.metrics.connected = True
        log.info("ingest: connected (session present: %s)", getattr(flags, "session_present", None))
        client.subscribe(self._subscriptions)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.metrics.connected = False
        if not self._stop.is_set():
            log.warning("ingest: lost the broker %s (%s); reconnecting", self.cfg.mqtt, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        topic, payload = message.topic, bytes(message.payload)
        prefix = self.cfg.topic_prefix
        if mqtt.topic_matches_sub(self._results, topic):
            parsed = parse_result(prefix, topic, payload)
            if isinstance(parsed, str):
                self.metrics.rejected(parsed)
                log.warning("ingest: refused a message on %s: %s", topic, parsed)
                self._ack(message.mid, message.qos)
                return
            self.metrics.received += 1
            self._queue.put(_Item(message.mid, message.qos, now, row=parsed))
        elif mqtt.topic_matches_sub(BRIDGE_FILTER, topic):
            self._queue.put(
                _Item(message.mid, message.qos, now, kind="bridge", name=topic.split("/")[3], payload=payload)
            )
        else:
            device = device_of(prefix, topic) or ""
            kind = topic.rsplit("/", 1)[-1]
            self._queue.put(_Item(message.mid, message.qos, now, kind=kind, name=device, payload=payload))

    def _ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self.client.ack(mid, qos)

    # ------------------------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        batch: list[_Item] = []
        failures = 0
        while not self._stop.is_set():
            if not batch:
                batch = self._collect()
                if not batch:
                    continue
            try:
                self._write(batch)
            except StoreError as exc:
                failures += 1
                self.metrics.store_failed()
                if failures & (failures - 1) == 0:
                    log.error("ingest: %s; the batch waits, unacknowledged (attempt %d)", exc, failures)
                self._stop.wait(min(5.0, 0.1 * 2**failures))
                continue
            failures = 0
            batch = []
        log.info("ingest: stopped")

    def _collect(self) -> list[_Item]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.batch_wait_s
        while len(batch) < self.cfg.batch_max:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[_Item]) -> None:
        rows = [i.row for i in batch if i.row is not None]
        if rows:
            outcome = self.store.insert(rows)
            self.metrics.committed(
                outcome.inserted, outcome.duplicates, _lag(rows), time.time() - batch[0].received
            )
            if outcome.duplicates:
                log.info("ingest: %d duplicates absorbed", outcome.duplicates)
        for item in batch:
            if item.row is None and item.name:
                if item.kind == "bridge":
                    self.store.bridge_state(item.name, item.payload)
                elif item.kind in ("status", "health", "stats"):
                    self.store.device_state(item.name, item.kind, item.payload)
        # Only now, after the commit: the broker may forget them, and the devices may delete them.
        for item in batch:
            self._ack(item.mid, item.qos)
        if rows:
            for device, ids in outcome.ids.items():
                payload = json.dumps({"seq": outcome.highest.get(device), "ids": ids}, separators=(",", ":"))
                self.client.publish(ack_topic(self.cfg.topic_prefix, device), payload, qos=1, retain=True)


def _lag(rows: list[Row]) -> float | None:
    """Seconds from the oldest result's processing on its device to now (clocks assumed in sync)."""
    stamps = []
    for r in rows:
        text = r.message.get("processed_at")
        if isinstance(text, str):
            try:
                stamps.append(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
            except ValueError:
                continue
    return time.time() - min(stamps) if stamps else None
