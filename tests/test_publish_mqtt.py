"""The MQTT and stdout publishers against a real mosquitto on 127.0.0.1 (see mqtt_broker.py).

Every wait is on a condition with a timeout; nothing sleeps to assert a timing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST, Mosquitto, Subscriber, make_tls, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge_ocr.config import HomeAssistantConfig, MqttConfig, TlsConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish import Command, Topics
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.publish.stdout import StdoutPublisher

DEVICE = "pi-test"
TOPICS = Topics("edge-ocr", DEVICE)
REPO = Path(__file__).resolve().parents[1]


def mqtt_config(broker: Mosquitto, **overrides: object) -> MqttConfig:
    base: dict[str, object] = {
        "url": broker.url,
        "client_id": f"edge-ocr-{DEVICE}-{os.getpid()}",
        "keepalive": 10,
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
    }
    base.update(overrides)
    return MqttConfig(**base)  # type: ignore[arg-type]


def put_results(outbox: Outbox, ids: list[str], source: str = "inbox") -> None:
    for msg_id in ids:
        payload = json.dumps({"id": msg_id, "device_id": DEVICE, "source": source, "text": msg_id}).encode()
        assert outbox.put(msg_id, TOPICS.result(source), payload, qos=1)


def result_ids(sub: Subscriber, source: str = "inbox") -> list[str]:
    return [json.loads(p)["id"] for p in sub.payloads(TOPICS.result(source))]


class Publishers:
    """Starts publishers with their own stop events; stops whatever is still running at teardown."""

    def __init__(self) -> None:
        self.running: list[tuple[MqttPublisher, threading.Event]] = []

    def start(
        self, cfg: MqttConfig, outbox: Outbox, **kwargs: object
    ) -> tuple[MqttPublisher, threading.Event]:
        stop = threading.Event()
        pub = MqttPublisher(cfg, DEVICE, outbox, stop, **kwargs)  # type: ignore[arg-type]
        pub.start()
        self.running.append((pub, stop))
        return pub, stop

    def stop(self, pub: MqttPublisher) -> None:
        for p, stop in self.running:
            if p is pub:
                stop.set()
                p.join(15)
                assert not p.is_alive()

    def close(self) -> None:
        for pub, stop in self.running:
            stop.set()
            pub.join(15)


@pytest.fixture
def publishers() -> Iterator[Publishers]:
    p = Publishers()
    yield p
    p.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "state" / "outbox.sqlite3") as ob:
        yield ob


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    subs: list[Subscriber] = []
    yield subs
    for s in subs:
        s.close()


def subscribe(subs: list[Subscriber], broker: Mosquitto, topics: list[str], **kwargs: object) -> Subscriber:
    sub = Subscriber(broker, topics, **kwargs)  # type: ignore[arg-type]
    subs.append(sub)
    return sub


# ------------------------------------------------------------------------------------------ delivery


def test_delivers_qos1_online_then_offline(mosquitto, outbox, publishers, subscribers) -> None:
    sub = subscribe(subscribers, mosquitto, [f"{TOPICS.base}/#"])
    ids = [f"r{i}" for i in range(5)]
    put_results(outbox, ids)
    pub, _ = publishers.start(mqtt_config(mosquitto), outbox)

    assert sub.wait_for(lambda _: len(result_ids(sub)) == 5)
    assert result_ids(sub) == ids  # in outbox order
    assert all(m.qos == 1 for m in sub.on(TOPICS.result("inbox")))
    assert wait_until(lambda: outbox.depth() == 0)  # acked -> deleted
    assert sub.payloads(TOPICS.status)[0] == b"online"
    assert pub.state.connected and pub.state.last_error is None and pub.state.connects == 1

    late = subscribe(subscribers, mosquitto, [TOPICS.status])
    assert late.wait_for(lambda m: bool(m))
    assert late.on(TOPICS.status)[0].payload == b"online" and late.on(TOPICS.status)[0].retain

    publishers.stop(pub)
    assert sub.wait_for(lambda _: sub.payloads(TOPICS.status)[-1:] == [b"offline"])
    later = subscribe(subscribers, mosquitto, [TOPICS.status])
    assert later.wait_for(lambda m: bool(m))
    assert later.payloads(TOPICS.status) == [b"offline"]  # retained


def test_new_messages_are_picked_up_while_running(mosquitto, outbox, publishers, subscribers) -> None:
    sub = subscribe(subscribers, mosquitto, [TOPICS.result("inbox")])
    pub, _ = publishers.start(mqtt_config(mosquitto), outbox)
    assert pub.wait_connected(10)
    put_results(outbox, ["a", "b"])
    assert sub.wait_for(lambda _: sorted(result_ids(sub)) == ["a", "b"])
    put_results(outbox, ["c"])
    assert sub.wait_for(lambda _: result_ids(sub) == ["a", "b", "c"])


def test_online_only_after_broker_accepts(mosquitto_factory, outbox, publishers, subscribers) -> None:
    broker = mosquitto_factory(start=False)  # port chosen, nothing listening yet
    put_results(outbox, ["x1", "x2"])
    pub, _ = publishers.start(mqtt_config(broker), outbox)
    assert wait_until(lambda: pub.state.attempts >= 2)  # retrying with backoff
    assert not pub.state.connected
    assert "cannot reach broker" in (pub.state.last_error or "")
    assert outbox.depth() == 2

    broker.start()
    sub = subscribe(subscribers, broker, [f"{TOPICS.base}/#"], client_id="watcher", clean=False)
    assert sub.wait_for(lambda _: len(result_ids(sub)) == 2)
    assert sub.payloads(TOPICS.status)[0] == b"online"
    assert pub.state.connects == 1


def test_broker_killed_and_restarted_nothing_lost(mosquitto, outbox, publishers, subscribers) -> None:
    # A persistent session: messages published while this subscriber is away are queued for it.
    sub = subscribe(subscribers, mosquitto, [TOPICS.result("inbox")], client_id="consumer", clean=False)
    pub, _ = publishers.start(mqtt_config(mosquitto), outbox)
    first = [f"before-{i}" for i in range(5)]
    put_results(outbox, first)
    assert sub.wait_for(lambda _: set(result_ids(sub)) == set(first))
    assert wait_until(lambda: outbox.depth() == 0)  # every PUBACK processed

    mosquitto.kill()
    assert wait_until(lambda: not pub.state.connected)
    during = [f"during-{i}" for i in range(20)]
    put_results(outbox, during)
    assert wait_until(lambda: pub.state.attempts >= 3)  # still retrying
    assert outbox.depth() == 20  # nothing acked while the broker is away

    mosquitto.restart()
    assert sub.wait_for(lambda _: set(result_ids(sub)) == set(first + during), timeout=30)
    assert wait_until(lambda: outbox.depth() == 0)
    assert pub.state.connects == 2


def test_unacked_messages_survive_a_publisher_restart(
    mosquitto_factory, tmp_path, publishers, subscribers
) -> None:
    broker = mosquitto_factory(start=False)
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as ob:
        put_results(ob, ["p1", "p2", "p3"])
        pub, _ = publishers.start(mqtt_config(broker), ob)
        assert wait_until(lambda: pub.state.attempts >= 1)
        publishers.stop(pub)  # e.g. the device reboots before the broker came back
        assert ob.depth() == 3
    broker.start()
    sub = subscribe(subscribers, broker, [TOPICS.result("inbox")])
    with Outbox(path) as ob:
        pub, _ = publishers.start(mqtt_config(broker), ob)
        assert sub.wait_for(lambda _: result_ids(sub) == ["p1", "p2", "p3"])
        assert wait_until(lambda: ob.depth() == 0)
        publishers.stop(pub)


def test_inflight_window_is_respected(mosquitto, outbox, publishers, subscribers) -> None:
    sub = subscribe(subscribers, mosquitto, [TOPICS.result("inbox")])
    ids = [f"m{i:03d}" for i in range(60)]
    put_results(outbox, ids)
    pub, _ = publishers.start(mqtt_config(mosquitto, max_inflight=3), outbox)
    seen: list[int] = []
    assert wait_until(lambda: seen.append(pub.state.inflight) or outbox.depth() == 0, interval=0.001)
    assert max(seen) <= 3
    assert sub.wait_for(lambda _: result_ids(sub) == ids)


# ------------------------------------------------------------------------------------------ auth, TLS


def test_password_file_login(mosquitto_factory, outbox, publishers, subscribers, tmp_path) -> None:
    broker = mosquitto_factory(users={"edge": "right-pw", "watcher": "w"})
    (tmp_path / "pw").write_text("right-pw\n")
    sub = subscribe(subscribers, broker, [f"{TOPICS.base}/#"], username="watcher", password="w")
    put_results(outbox, ["auth1"])
    cfg = mqtt_config(broker, username="edge", password_file=tmp_path / "pw")
    publishers.start(cfg, outbox)
    assert sub.wait_for(lambda _: result_ids(sub) == ["auth1"])


def test_wrong_password_is_logged_retried_and_loses_nothing(
    mosquitto_factory, outbox, publishers, subscribers, tmp_path, caplog
) -> None:
    broker = mosquitto_factory(users={"edge": "right-pw", "watcher": "w"})
    (tmp_path / "pw").write_text("wrong-pw\n")
    sub = subscribe(subscribers, broker, [f"{TOPICS.base}/#"], username="watcher", password="w")
    put_results(outbox, ["w1", "w2", "w3"])
    cfg = mqtt_config(broker, username="edge", password_file=tmp_path / "pw")

    with caplog.at_level(logging.INFO, logger="edge_ocr.publish.mqtt"):
        pub, _ = publishers.start(cfg, outbox)
        assert wait_until(lambda: pub.state.attempts >= 3)  # retried, with backoff
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, caplog.text
    assert "refused the login of user 'edge'" in errors[0]
    assert "password_file" in errors[0]
    assert "wrong-pw" not in caplog.text
    assert len(errors) < pub.state.attempts  # repeats are not logged one by one
    assert not pub.state.connected and "refused the login" in (pub.state.last_error or "")
    assert outbox.depth() == 3
    assert sub.on(TOPICS.status) == []  # never `online` without an accepted login

    publishers.stop(pub)
    assert outbox.depth() == 3
    (tmp_path / "pw").write_text("right-pw\n")  # fixed: a new start delivers everything
    publishers.start(cfg, outbox)
    assert sub.wait_for(lambda _: result_ids(sub) == ["w1", "w2", "w3"])


def test_tls_with_self_signed_ca_and_client_certificate(
    mosquitto_factory, outbox, publishers, subscribers, tmp_path
) -> None:
    tls = make_tls(tmp_path / "tls")
    broker = mosquitto_factory(tls=tls, require_certificate=True)
    assert broker.url.startswith("mqtts://")
    (tmp_path / "keypw").write_text(tls.client_key_password)
    sub = subscribe(subscribers, broker, [f"{TOPICS.base}/#"])
    put_results(outbox, ["t1", "t2"])
    cfg = mqtt_config(
        broker,
        tls=TlsConfig(
            ca_file=tls.ca,
            cert_file=tls.client_cert,
            key_file=tls.client_key,
            key_password_file=tmp_path / "keypw",
        ),
    )
    pub, _ = publishers.start(cfg, outbox)
    assert sub.wait_for(lambda _: result_ids(sub) == ["t1", "t2"])
    assert sub.payloads(TOPICS.status)[0] == b"online"
    publishers.stop(pub)
    assert sub.wait_for(lambda _: sub.payloads(TOPICS.status)[-1:] == [b"offline"])


def test_tls_with_an_unknown_ca_is_refused_clearly(mosquitto_factory, outbox, publishers, tmp_path) -> None:
    broker = mosquitto_factory(tls=make_tls(tmp_path / "tls"))
    other = make_tls(tmp_path / "other")
    pub, _ = publishers.start(mqtt_config(broker, tls=TlsConfig(ca_file=other.ca)), outbox)
    assert wait_until(lambda: pub.state.attempts >= 2)
    assert not pub.state.connected
    assert "TLS handshake" in (pub.state.last_error or "") and "certificate verify failed" in (
        pub.state.last_error or ""
    )


# ------------------------------------------------------------------------------------------ last will


def test_last_will_offline_when_the_process_dies(mosquitto, subscribers, tmp_path) -> None:
    sub = subscribe(subscribers, mosquitto, [TOPICS.status])
    script = f"""
import sys, threading
from pathlib import Path
from edge_ocr.config import MqttConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish.mqtt import MqttPublisher
cfg = MqttConfig(url={mosquitto.url!r}, client_id="crasher", keepalive=10)
pub = MqttPublisher(cfg, {DEVICE!r}, Outbox(Path({str(tmp_path / "o.sqlite3")!r})), threading.Event())
pub.start()
assert pub.wait_connected(10)
print("connected", flush=True)
threading.Event().wait(60)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"connected"
        assert sub.wait_for(lambda _: sub.payloads(TOPICS.status)[-1:] == [b"online"])
        proc.send_signal(signal.SIGKILL)
        assert sub.wait_for(lambda _: sub.payloads(TOPICS.status)[-1:] == [b"offline"])
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------ commands


def test_commands_are_handed_over_and_replied(mosquitto, outbox, publishers, subscribers) -> None:
    seen: list[Command] = []

    def handler(cmd: Command) -> dict | None:
        seen.append(cmd)
        if cmd.verb == "pause":
            return {"paused": True}
        if cmd.verb == "boom":
            raise RuntimeError("cannot do that")
        return None

    sub = subscribe(subscribers, mosquitto, [f"{TOPICS.base}/cmd/+/reply"])
    sender = mqtt.Client(CallbackAPIVersion.VERSION2)
    sender.connect(HOST, mosquitto.port)
    sender.loop_start()
    try:
        # A retained command would replay at every connection: the publisher must ignore it.
        sender.publish(TOPICS.cmd("boom"), b"", qos=1, retain=True).wait_for_publish(5)
        sender.publish(TOPICS.cmd("boom"), b"{}", qos=1, retain=True).wait_for_publish(5)
        pub, _ = publishers.start(mqtt_config(mosquitto), outbox, on_command=handler)
        assert pub.wait_connected(10)

        # The subscription is made in on_connect; wait for it by retrying a harmless verb.
        def ping_replied() -> bool:
            sender.publish(TOPICS.cmd("ping"), b"", qos=1)
            return sub.wait_for(lambda _: bool(sub.on(TOPICS.reply("ping"))), timeout=0.5)

        assert wait_until(ping_replied)
        assert json.loads(sub.payloads(TOPICS.reply("ping"))[0]) == {"verb": "ping", "ok": True}
        assert [c.verb for c in seen if c.verb != "ping"] == []  # the retained boom was ignored

        sender.publish(TOPICS.cmd("pause"), json.dumps({"id": 7}).encode(), qos=1)
        assert sub.wait_for(lambda _: bool(sub.on(TOPICS.reply("pause"))))
        assert json.loads(sub.payloads(TOPICS.reply("pause"))[0]) == {
            "verb": "pause",
            "id": 7,
            "paused": True,
            "ok": True,
        }
        assert seen[-1] == Command("pause", {"id": 7}, b'{"id": 7}')

        sender.publish(TOPICS.cmd("boom"), b"", qos=1)
        assert sub.wait_for(lambda _: bool(sub.on(TOPICS.reply("boom"))))
        reply = json.loads(sub.payloads(TOPICS.reply("boom"))[0])
        assert reply["ok"] is False and "cannot do that" in reply["error"]
    finally:
        sender.publish(TOPICS.cmd("boom"), b"", qos=1, retain=True).wait_for_publish(5)
        sender.loop_stop()
        sender.disconnect()


def test_stats_and_home_assistant_discovery(mosquitto, outbox, publishers, subscribers) -> None:
    sub = subscribe(subscribers, mosquitto, ["homeassistant/#", TOPICS.stats, TOPICS.health])
    cfg = mqtt_config(mosquitto, home_assistant=HomeAssistantConfig(enabled=True))
    pub, _ = publishers.start(cfg, outbox, sources=["inbox", "scans"])
    assert pub.wait_connected(10)
    assert sub.wait_for(lambda m: len([x for x in m if x.topic.startswith("homeassistant/")]) == 4)
    configs = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.startswith("homeassistant/")}
    node = f"edge-ocr-{DEVICE}"
    status = configs[f"homeassistant/binary_sensor/{node}/status/config"]
    assert status["state_topic"] == TOPICS.status and status["payload_on"] == "online"
    scans = configs[f"homeassistant/sensor/{node}/last_text_scans/config"]
    assert scans["state_topic"] == TOPICS.result("scans")
    assert scans["availability_topic"] == TOPICS.status
    assert scans["device"]["identifiers"] == [node]
    problem = configs[f"homeassistant/binary_sensor/{node}/problem/config"]
    assert problem["state_topic"] == TOPICS.health and problem["device_class"] == "problem"

    assert pub.publish_stats({"processed": 3, "outbox_depth": 0})
    assert sub.wait_for(lambda _: bool(sub.on(TOPICS.stats)))
    assert json.loads(sub.payloads(TOPICS.stats)[0]) == {"processed": 3, "outbox_depth": 0}

    # The problem sensor follows the retained health document: on with a reason, then off again.
    pub.publish_health({"problem": True, "condition": "low_space", "reason": "state_dir /x is short"})
    assert sub.wait_for(lambda _: bool(sub.payloads(TOPICS.health)))
    assert json.loads(sub.payloads(TOPICS.health)[-1])["problem"] is True
    late = subscribe(subscribers, mosquitto, [TOPICS.health])  # retained: a late subscriber sees it too
    assert late.wait_for(lambda _: bool(late.payloads(TOPICS.health)))
    pub.publish_health({"problem": False, "condition": None, "reason": None})
    assert sub.wait_for(lambda _: json.loads(sub.payloads(TOPICS.health)[-1])["problem"] is False)


# ------------------------------------------------------------------------------------------ stdout


def test_stdout_publisher_prints_each_result_once_and_keeps_it(outbox) -> None:
    put_results(outbox, ["s1", "s2"])
    outbox.put("raw", "t", b"not json\nsecond line")
    stream = io.StringIO()
    stop = threading.Event()
    pub = StdoutPublisher(outbox, stop, stream=stream)
    pub.start()
    try:
        assert wait_until(lambda: stream.getvalue().count("\n") == 3)
        put_results(outbox, ["s3"])
        # A camera region's retained state copy: for a broker, not a second line on stdout.
        outbox.put("s3-state", "edge-ocr/dev/state/cam/r", b'{"id":"s3"}', retain=True)
        put_results(outbox, ["s4"])
        assert wait_until(lambda: "s4" in stream.getvalue())
    finally:
        stop.set()
        pub.join(5)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) if line.startswith("{") else None for line in lines][0]["id"] == "s1"
    assert json.loads(lines[2]) == "not json\nsecond line"
    assert [json.loads(line)["id"] for line in lines[3:]] == ["s3", "s4"]
    assert outbox.depth() == 6  # kept for a broker configured later, the state copy too
    assert outbox.peek(10, unprinted_only=True) == []
    assert pub.state.connected


def test_stdout_publisher_trims_only_printed_results_when_full(tmp_path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=3) as ob:
        stream = io.StringIO()
        stop = threading.Event()
        pub = StdoutPublisher(ob, stop, stream=stream)
        pub.start()
        try:
            for i in range(6):
                assert wait_until(lambda: not ob.is_full())  # back pressure as the daemon applies it
                put_results(ob, [f"f{i}"])
            assert wait_until(lambda: stream.getvalue().count("\n") == 6)
        finally:
            stop.set()
            pub.join(5)
        assert [json.loads(line)["id"] for line in stream.getvalue().splitlines()] == [
            f"f{i}" for i in range(6)
        ]
        assert ob.depth() <= 3
