"""The MQTT publisher: one thread draining the durable outbox through a paho-mqtt 2.x client.

Contract (see `topics` for the layout):

- The client connects in the background and retries with exponential backoff (``backoff_min_s`` doubling
  to ``backoff_max_s``) for as long as it runs: a broker that is down or a refused login is logged
  clearly (the first time and then at attempts 2, 4, 8, ...) and retried, while results wait in the
  outbox.
- The last will is ``offline`` (retained, QoS 1) on ``<p>/status``. ``online`` (retained) is published
  from the CONNACK callback only when the broker accepted the connection; ``offline`` is published
  again on a clean stop, before disconnecting (a clean disconnect does not fire the will).
- Results are sent in outbox order with their stored QoS (1 by default), at most ``max_inflight`` at a
  time, and deleted from the outbox only after the broker's PUBACK (``on_publish``) or, with
  ``delivery: end_to_end``, once the fleet's ingester says it stored them (`delivery.EndToEnd`). A
  mid -> msg_id map ties the two; ``on_publish`` runs under paho's own lock and may fire before
  ``publish()`` has returned the mid, so an early ack is parked until the mid is registered. Deletion
  is batched on the publisher thread, keeping fsyncs off the network thread.
- On a lost connection the unacknowledged messages stay in the outbox *and* in paho's session queue;
  paho resends them (DUP) after the reconnect, so they are not sent twice by us. After a restart of the
  process they are sent again from the outbox (same id; consumers drop duplicates by id).
- Commands on ``<p>/cmd/<verb>`` go to the `CommandHandler`; the reply is JSON on
  ``<p>/cmd/<verb>/reply``. Retained commands are ignored (they would replay at every connection).
- Home Assistant discovery configs are published (retained) on every connection when enabled. Then
  the publisher subscribes to every config of its node (`config_filter`): a retained, non-empty config
  there that it did not just publish belongs to a source or region no longer configured, and is emptied
  (an empty retained payload), which makes Home Assistant delete that entity. Nothing about past configs
  is stored: the broker's retained set is the memory.
- ``<p>/health`` (retained, QoS 1) carries the daemon's degraded state (`publish_health`): sent when it
  changes and again on every connection, so a subscriber, and Home Assistant's problem sensor, always
  see the current one.
- The outbox may come later (`attach`): a daemon started on a full disk cannot open it yet, and still
  connects to say so. Outbox errors (a full disk while deleting acknowledged messages) are retried
  and logged like connection errors: once, then at repeats 2, 4, 8, ...
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_ocr.config import MqttConfig
from edge_ocr.errors import ConfigError, PublishError
from edge_ocr.outbox import Outbox
from edge_ocr.publish.delivery import EndToEnd, to_send, worth_peeking
from edge_ocr.publish.homeassistant import RegionSensor, config_filter, discovery_messages
from edge_ocr.publish.topics import OFFLINE, ONLINE, Command, CommandHandler, ConnectionState, Topics

__all__ = ["MqttPublisher", "build_tls_context"]

log = logging.getLogger(__name__)

# CONNACK reason codes (MQTT 5 numbering; paho maps MQTT 3.1.1 return codes onto them) that mean the
# broker refused *us*, not that it is unreachable.
_LOGIN_REFUSED = {134, 135}  # bad user name or password, not authorized


class _QuietReconnects(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR on every reconnect round; we report that ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_QuietReconnects())


class _Client(mqtt.Client):
    """paho's client, keeping the reason of the last failed connection attempt (paho drops it)."""

    last_connect_error: BaseException | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise


def build_tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS context for an mqtts:// url; raises ConfigError naming the file that cannot be used."""
    tls = config.tls
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls and tls.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use mqtt.tls.ca_file {tls.ca_file if tls else ''}: {exc}") from exc
    if tls is None:
        return ctx
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(
                str(tls.cert_file),
                str(tls.key_file) if tls.key_file else None,
                password=tls.read_key_password(),
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use mqtt.tls.cert_file {tls.cert_file} / key_file {tls.key_file}: {exc}",
                remedy="check the files and the key passphrase",
            ) from exc
    ctx.check_hostname = tls.check_hostname
    return ctx


class MqttPublisher:
    """Owns the MQTT client and the thread that drains `outbox` until `stop` is set."""

    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        outbox: Outbox | None,
        stop: threading.Event,
        *,
        sources: Sequence[str] = (),
        on_command: CommandHandler | None = None,
        region_sensors: Sequence[RegionSensor] = (),
        poll_s: float = 0.05,
        drain_timeout_s: float = 3.0,
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, device_id)
        self.outbox = outbox
        self._stop = stop
        self._sources = tuple(sources)
        self._on_command = on_command
        self._poll_s = poll_s
        self._drain_timeout_s = drain_timeout_s
        self._where = f"{config.host}:{config.port}"

        self._lock = threading.Lock()
        self._mids: dict[int, str | None] = {}  # mid -> outbox msg_id (None: not an outbox message)
        self._early: set[int] = set()  # mids acknowledged before publish() returned
        self._acked: list[str] = []  # acknowledged, not yet deleted from the outbox
        self._outstanding: set[str] = set()  # handed to paho and not yet deleted from the outbox
        self._poison: set[str] = set()  # messages paho refuses (bad topic); kept, logged, skipped
        self._connected = threading.Event()
        self._stopping = False
        self._last_error: str | None = None
        self._error_repeats = 0
        self._connects = 0
        self._attempts = 0
        self._since: float | None = None
        self._client: _Client | None = None
        self._thread: threading.Thread | None = None
        self._health: bytes | None = None  # the last health document, re-sent on every connection
        self._outbox_error: str | None = None
        self._outbox_repeats = 0
        ha = config.home_assistant
        # Fixed for the life of the publisher (a config change starts a new one): built once, and the
        # set of their topics tells the current configs from stale ones.
        self._discovery = (
            tuple(discovery_messages(self.topics, self._sources, ha.discovery_prefix, region_sensors))
            if ha.enabled
            else ()
        )
        self._discovery_topics = frozenset(topic for topic, _ in self._discovery)
        self._stale_logged: set[str] = set()  # only touched on paho's network thread
        self._e2e = EndToEnd(self.topics, config.ack_timeout_s) if config.delivery == "end_to_end" else None

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build the client (reads the secrets: ConfigError if they cannot be read) and start."""
        cfg = self.config
        client_id = cfg.client_id or f"edge-ocr-{self.topics.device_id}"
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.suppress_exceptions = True  # a bug in a callback must not end the network thread
        client.enable_logger(_paho_log)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.read_password())
        if cfg.use_tls:
            client.tls_set_context(build_tls_context(cfg))
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(cfg.backoff_min_s, cfg.backoff_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(cfg.max_inflight)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        if self._discovery:
            # Its own callback: config messages never reach the command handler (on_message).
            client.message_callback_add(
                config_filter(self.topics, cfg.home_assistant.discovery_prefix), self._on_discovery_config
            )
        if self._e2e is not None:
            client.message_callback_add(self.topics.ack, self._e2e.on_message)
        self._client = client
        log.info(
            "MQTT: connecting to %s as %r (device %s, tls %s)",
            self._where,
            client_id,
            self.topics.device_id,
            "on" if cfg.use_tls else "off",
        )
        client.connect_async(cfg.host, cfg.port, cfg.keepalive)
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> ConnectionState:
        with self._lock:
            return ConnectionState(
                connected=self._connected.is_set(),
                last_error=self._last_error,
                connects=self._connects,
                attempts=self._attempts,
                inflight=len(self._outstanding),
                since=self._since,
            )

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once the broker accepted the connection (for callers that want to wait)."""
        return self._connected.wait(timeout)

    def attach(self, outbox: Outbox) -> None:
        """Start draining `outbox` (one opened after the publisher started)."""
        self.outbox = outbox

    def _depth(self) -> int:
        box = self.outbox
        return box.depth() if box is not None else 0

    def publish_health(self, health: Mapping[str, Any]) -> None:
        """Set the retained health document; sent now if connected, and on every connection."""
        payload = json.dumps(health, separators=(",", ":"), default=str).encode()
        with self._lock:
            if payload == self._health:
                return
            self._health = payload
        if self._connected.is_set():
            self._send(self.topics.health, payload, 1, True)

    def publish_stats(self, stats: Mapping[str, Any]) -> bool:
        """Send a stats message (QoS 0, not retained, not stored); False while disconnected."""
        if not self._connected.is_set():
            return False
        self._send(self.topics.stats, json.dumps(stats, separators=(",", ":")).encode(), 0, False)
        return True

    # ------------------------------------------------------------------------------------ thread

    def _run(self) -> None:
        busy = False
        # While a backlog drains, look again almost at once (acks free the window within a round trip).
        while not self._stop.wait(0.002 if busy else self._poll_s):
            busy = False
            try:
                sent_or_acked = self._drain()
                busy = sent_or_acked > 0 or (self._connected.is_set() and self.state.inflight > 0)
                self._outbox_error, self._outbox_repeats = None, 0
            except PublishError as exc:
                self._outbox_failed(exc)
            except Exception:
                log.exception("MQTT: unexpected error in the publisher loop; it goes on")
        try:
            self._shutdown()
        except Exception:
            log.exception("MQTT: error while stopping")

    def _outbox_failed(self, exc: PublishError) -> None:
        """An outbox error (a full or read-only disk): retried each round, logged 1, 2, 4, 8... times."""
        text = str(exc)
        if text != self._outbox_error:
            self._outbox_error, self._outbox_repeats = text, 0
        self._outbox_repeats += 1
        n = self._outbox_repeats
        if n == 1:
            log.warning("MQTT: outbox error, will retry: %s", text)
        elif n & (n - 1) == 0:
            log.warning("MQTT: outbox error still there after %d attempts: %s", n, text)
        # A full disk does not clear within a poll period: slow down rather than spin.
        self._stop.wait(min(5.0, 0.05 * n))

    def _drain(self) -> int:
        """Delete what was acknowledged and fill the in-flight window; returns the work done."""
        done = self._flush_acks()
        if not self._connected.is_set() or self.outbox is None:
            return done
        with self._lock:
            busy = self._outstanding | self._poison
            room = self.config.max_inflight - len(self._outstanding)
        e2e = self._e2e
        if room <= 0 or not worth_peeking(self.outbox, e2e, len(busy)):
            return done
        due = e2e.sent_before() if e2e is not None else None
        for msg in self.outbox.peek(room, exclude=busy, sent_before=due):
            if not self._connected.is_set():
                break
            payload = e2e.payload(msg) if e2e is not None else msg.payload
            if self._send(msg.topic, payload, msg.qos, msg.retain, msg.msg_id) is not None:
                done += 1
        return done

    def _flush_acks(self) -> int:
        with self._lock:
            acked, self._acked = self._acked, []
        if self.outbox is None or (not acked and self._e2e is None):
            return 0
        try:
            done_at_puback = self._e2e.settle(self.outbox, acked) if self._e2e is not None else acked
            self.outbox.ack_many(done_at_puback)
        except PublishError:
            with self._lock:
                self._acked[:0] = acked  # try again next round; the broker has them already
            raise
        with self._lock:
            self._outstanding.difference_update(acked)
        return len(acked)

    def _shutdown(self) -> None:
        client = self._client
        assert client is not None
        self._stopping = True
        # Give the last results (e.g. of the file finished during shutdown) a moment to go out.
        deadline = time.monotonic() + self._drain_timeout_s
        while self._connected.is_set() and time.monotonic() < deadline:
            self._drain()
            with self._lock:
                pending = len(self._outstanding) + len(self._acked)
            if not pending and to_send(self.outbox, self._e2e) <= len(self._poison):
                break
            time.sleep(self._poll_s)
        if self._connected.is_set():
            info = self._send(self.topics.status, OFFLINE, 1, True)
            try:
                if info is not None:
                    info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as exc:
                log.warning("MQTT: could not publish offline: %s", exc)
            client.disconnect()
        client.loop_stop()
        self._connected.clear()
        try:
            self._flush_acks()
        except PublishError as exc:  # the broker has them: they are sent again after the restart
            log.warning("MQTT: could not delete the last acknowledged messages: %s", exc)
        log.info("MQTT: stopped; %d messages wait in the outbox", self._depth())

    # ------------------------------------------------------------------------------------ sending

    def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool, msg_id: str | None = None
    ) -> mqtt.MQTTMessageInfo | None:
        client = self._client
        assert client is not None
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            if msg_id is not None:
                with self._lock:
                    self._poison.add(msg_id)
                log.error("MQTT: message %s cannot be sent (%s); it stays in the outbox", msg_id, exc)
            return None
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN) or (
            qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS
        ):
            return None  # not queued by paho: an outbox message will be peeked again
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                if msg_id is not None:
                    self._acked.append(msg_id)
            else:
                self._mids[info.mid] = msg_id
            if msg_id is not None:
                self._outstanding.add(msg_id)
        return info

    # ------------------------------------------------------------------------------------ callbacks
    # These run on paho's network thread.

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        with self._lock:
            if mid not in self._mids:
                self._early.add(mid)
                return
            msg_id = self._mids.pop(mid)
            if msg_id is None:
                return
            if reason_code.is_failure:
                # MQTT 5 only: the broker refused this message; send it again later.
                self._outstanding.discard(msg_id)
                log.warning("MQTT: broker refused message %s: %s", msg_id, reason_code)
                return
            self._acked.append(msg_id)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        with self._lock:
            self._attempts += 1
        if reason_code.is_failure:
            if reason_code.value in _LOGIN_REFUSED:
                user = self.config.username
                text = (
                    f"broker {self._where} refused the login"
                    f"{f' of user {user!r}' if user else ' (anonymous)'}: {reason_code}; check mqtt.username "
                    "and the password source (password_file, password_env or password_credential)"
                )
            else:
                text = f"broker {self._where} refused the connection: {reason_code}"
            self._report(text, logging.ERROR)
            return
        with self._lock:
            self._connects += 1
            self._last_error = None
            self._error_repeats = 0
            self._since = time.time()
        log.info("MQTT: connected to %s; %d messages wait in the outbox", self._where, self._depth())
        self._connected.set()
        # Only now, after the broker accepted us:
        self._send(self.topics.status, ONLINE, 1, True)
        with self._lock:
            health = self._health
        if health is not None:
            self._send(self.topics.health, health, 1, True)
        client.subscribe(self.topics.cmd_filter, qos=1)
        if self._e2e is not None:
            client.subscribe(self.topics.ack, qos=1)
        if self._discovery:
            for topic, payload in self._discovery:
                self._send(topic, payload, 1, True)
            # After the configs: the broker handles our packets in order, so the retained set it sends
            # for this subscription already holds the current ones. The subscription is kept rather than
            # dropped after a delay: once the retained burst is over it only sees the rare live config
            # message (discovery is written at connect), which carries no retain flag and is ignored,
            # and there is no timer to race a slow broker's burst.
            client.subscribe(config_filter(self.topics, self.config.home_assistant.discovery_prefix), qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        with self._lock:
            self._attempts += 1
        exc = self._client.last_connect_error if self._client else None
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            self._report(f"TLS handshake with {self._where} failed: {exc}", logging.ERROR)
        else:
            self._report(f"cannot reach broker {self._where}: {exc or 'connection failed'}", logging.WARNING)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if not was:
            return
        with self._lock:
            self._since = time.time()
        if self._stopping:
            log.info("MQTT: disconnected from %s", self._where)
            return
        self._report(f"lost the connection to {self._where}: {reason_code}", logging.WARNING)
        log.warning(
            "MQTT: results wait in the outbox (%d) and are sent after the reconnect", self._depth()
        )

    def _report(self, text: str, level: int) -> None:
        """Log an error when it changes, then at repeats 2, 4, 8, ... (a retry loop must not flood logs)."""
        with self._lock:
            if text != self._last_error:
                self._last_error = text
                self._error_repeats = 1
                repeats = 1
            else:
                self._error_repeats += 1
                repeats = self._error_repeats
        if repeats == 1:
            log.log(level, "MQTT: %s; retrying with backoff (up to %gs)", text, self.config.backoff_max_s)
        elif repeats & (repeats - 1) == 0:
            log.log(level, "MQTT: still failing after %d attempts: %s", repeats, text)

    def _on_discovery_config(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Only a retained config is a leftover: a live one (no retain flag) is a current publication, and
        # an empty one is a removal already done (ours echoing back included).
        if not message.retain or not message.payload or message.topic in self._discovery_topics:
            return
        if message.topic not in self._stale_logged:
            self._stale_logged.add(message.topic)
            log.info("MQTT: removing the Home Assistant config %s (no longer configured)", message.topic)
        self._send(message.topic, b"", 1, True)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        verb = message.topic.rsplit("/", 1)[-1]
        if message.retain:
            log.warning("MQTT: ignoring retained command %r (clear it with an empty retained message)", verb)
            return
        reply = command_reply(verb, bytes(message.payload), self._on_command)
        self._send(self.topics.reply(verb), json.dumps(reply, default=str).encode(), 1, False)


def command_reply(verb: str, payload: bytes, on_command: CommandHandler | None) -> dict[str, Any]:
    """Run cmd/<verb> (a JSON object, other JSON or text as its arguments); its reply document."""
    try:
        parsed = json.loads(payload) if payload.strip() else {}
    except ValueError:
        parsed = {"value": payload.decode("utf-8", "replace")}
    args = parsed if isinstance(parsed, dict) else {"value": parsed}
    reply: dict[str, Any] = {"verb": verb}
    if "id" in args:
        reply["id"] = args["id"]
    if on_command is None:
        reply.update(ok=False, error="commands are not handled by this process")
    else:
        try:
            result = on_command(Command(verb, args, payload))
            reply.update(result or {})
            reply.setdefault("ok", True)
        except Exception as exc:  # the command's failure is the reply, not a crash of the loop
            log.exception("MQTT: command %r failed", verb)
            reply.update(ok=False, error=str(exc))
    log.info("MQTT: command %r -> %s", verb, "ok" if reply.get("ok") else reply.get("error"))
    return reply
