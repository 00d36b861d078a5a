"""End-to-end acknowledgement (mqtt.delivery: end_to_end): a real publisher and outbox, a real mosquitto.

The fleet's ingester is played by a test client publishing the retained acknowledgement
``edge-ocr/ack/<device>`` ({"seq": highest stored, "ids": [...]}); `tests/test_ingest.py` runs the real
ingester and `tests/test_fleet_faults.py` the whole chain. Every wait is on a condition.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST, Mosquitto, Subscriber, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge_ocr.config import MqttConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish import Topics
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.results import problems, with_seq

DEVICE = "pi-e2e"
TOPICS = Topics("edge-ocr", DEVICE)


def config(broker: Mosquitto, **overrides: object) -> MqttConfig:
    base: dict[str, object] = {
        "url": broker.url,
        "client_id": f"edge-ocr-{DEVICE}-{os.getpid()}",
        "keepalive": 10,
        "backoff_min_s": 0.1,
        "backoff_max_s": 0.5,
        "delivery": "end_to_end",
        "ack_timeout_s": 1.0,
    }
    base.update(overrides)
    return MqttConfig(**base)  # type: ignore[arg-type]


def put_results(outbox: Outbox, ids: list[str]) -> None:
    for msg_id in ids:
        payload = json.dumps({"id": msg_id, "device_id": DEVICE, "text": msg_id}).encode()
        assert outbox.put(msg_id, TOPICS.result("inbox"), payload, qos=1)


def seqs(outbox: Outbox) -> dict[str, int]:
    return {m.msg_id: m.seq for m in outbox.peek(10_000)}


def acknowledge(broker: Mosquitto, ids: list[str], seq: int | None = None) -> None:
    """What the ingester does after a commit: the retained acknowledgement of the device."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-ingester-{os.getpid()}")
    client.connect(HOST, broker.port)
    client.loop_start()
    try:
        doc = {"seq": seq, "ids": ids}
        client.publish(TOPICS.ack, json.dumps(doc), qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "state" / "outbox.sqlite3") as ob:
        yield ob


@pytest.fixture
def run() -> Iterator[list[tuple[MqttPublisher, threading.Event]]]:
    running: list[tuple[MqttPublisher, threading.Event]] = []
    yield running
    for pub, stop in running:
        stop.set()
        pub.join(15)


def start(running: list, cfg: MqttConfig, outbox: Outbox) -> MqttPublisher:
    stop = threading.Event()
    pub = MqttPublisher(cfg, DEVICE, outbox, stop)
    pub.start()
    running.append((pub, stop))
    assert pub.wait_connected(10)
    return pub


def test_results_carry_their_outbox_sequence_and_wait_for_the_fleet(mosquitto, outbox, run) -> None:
    sub = Subscriber(mosquitto, [TOPICS.result("inbox")])
    try:
        ids = [f"r{i}" for i in range(6)]
        put_results(outbox, ids)
        # A region's retained state copy: the ingester does not store it, so it goes at PUBACK.
        outbox.put("r0-state", f"{TOPICS.base}/state/cam/r", b'{"id":"r0"}', retain=True)
        seq_of = seqs(outbox)
        start(run, config(mosquitto, ack_timeout_s=60), outbox)

        assert sub.wait_for(lambda m: len(m) >= 6)
        sent = [json.loads(p) for p in sub.payloads(TOPICS.result("inbox"))]
        assert [(m["id"], m["seq"]) for m in sent] == [(i, seq_of[i]) for i in ids]
        assert all(problems(m) is None for m in sent)
        # PUBACK marks them sent; they stay until the fleet says it stored them.
        assert wait_until(lambda: outbox.unacked() == 6)
        assert wait_until(lambda: outbox.depth() == 6)  # the state copy went at PUBACK
        assert outbox.stats().unacked == 6

        # The acknowledgement is honoured: the results it names go, the others stay, even those with a
        # lower sequence (r1 may have been lost on the way while r3, later, was stored).
        acknowledge(mosquitto, ["r0", "r2", "r3"], seq=seq_of["r3"])
        assert wait_until(lambda: outbox.depth() == 3)
        assert sorted(seqs(outbox)) == ["r1", "r4", "r5"]
        assert outbox.unacked() == 3
        # Ids it does not hold (another outbox's, already deleted) change nothing.
        acknowledge(mosquitto, ["r0", "elsewhere"])
        acknowledge(mosquitto, ["r1", "r4", "r5"], seq=seq_of["r5"])
        assert wait_until(lambda: outbox.depth() == 0)
        assert outbox.unacked() == 0
        # Nothing was published twice: acknowledged in time.
        assert len(sub.payloads(TOPICS.result("inbox"))) == 6
    finally:
        sub.close()


def test_never_acknowledged_keeps_everything_and_republishes_the_same_id(mosquitto, tmp_path, run) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    sub = Subscriber(mosquitto, [TOPICS.result("inbox")])
    try:
        with Outbox(path) as outbox:
            put_results(outbox, ["a", "b", "c"])
            seq_of = seqs(outbox)
            pub = start(run, config(mosquitto, ack_timeout_s=1.0), outbox)

            def copies(n: int) -> bool:
                got = [json.loads(p)["id"] for p in sub.payloads(TOPICS.result("inbox"))]
                return all(got.count(i) >= n for i in "abc")

            # Sent, not acknowledged, sent again after ack_timeout_s: same id, same sequence, same bytes.
            assert sub.wait_for(lambda _: copies(2), timeout=15)
            received = [json.loads(p) for p in sub.payloads(TOPICS.result("inbox"))]
            assert {(m["id"], m["seq"]) for m in received} == {(i, seq_of[i]) for i in "abc"}
            assert outbox.depth() == 3  # everything kept
            assert pub._e2e is not None and pub._e2e.republished >= 3
            run[-1][1].set()
            pub.join(15)
            assert not pub.is_alive()
        # Kept across a restart of the device too; sent again at once (they were due).
        with Outbox(path) as outbox:
            assert outbox.depth() == 3 and outbox.unacked() == 3
            before = len(sub.payloads(TOPICS.result("inbox")))
            start(run, config(mosquitto, ack_timeout_s=1.0), outbox)
            assert sub.wait_for(lambda m: len(m) >= before + 3, timeout=15)
            acknowledge(mosquitto, list("abc"), seq=max(seq_of.values()))
            assert wait_until(lambda: outbox.depth() == 0)
    finally:
        sub.close()


def test_broker_mode_deletes_at_puback_and_adds_no_sequence(mosquitto, outbox, run) -> None:
    sub = Subscriber(mosquitto, [TOPICS.result("inbox")])
    try:
        put_results(outbox, ["x", "y"])
        start(run, config(mosquitto, delivery="broker"), outbox)
        assert sub.wait_for(lambda m: len(m) >= 2)
        assert wait_until(lambda: outbox.depth() == 0)
        assert outbox.unacked() == 0
        assert all("seq" not in json.loads(p) for p in sub.payloads(TOPICS.result("inbox")))
    finally:
        sub.close()


def test_a_full_outbox_of_unacknowledged_results_is_back_pressure(mosquitto, tmp_path, run) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=3) as outbox:
        put_results(outbox, ["a", "b", "c"])
        start(run, config(mosquitto, ack_timeout_s=60), outbox)
        assert wait_until(lambda: outbox.unacked() == 3)
        assert outbox.is_full()  # sent but not acknowledged still counts against the bound
        acknowledge(mosquitto, ["a", "b", "c"])
        assert wait_until(lambda: not outbox.is_full() and outbox.depth() == 0)


def test_a_new_outbox_never_reuses_sequences_already_stored(tmp_path) -> None:
    with Outbox(tmp_path / "old.sqlite3") as old:
        put_results(old, ["a"])
        old_seq = seqs(old)["a"]
    (tmp_path / "old.sqlite3").unlink()
    with Outbox(tmp_path / "old.sqlite3") as new:
        put_results(new, ["b"])
        assert seqs(new)["b"] > old_seq


def test_with_seq_and_problems() -> None:
    assert json.loads(with_seq(b'{"id":"a"}', 7)) == {"id": "a", "seq": 7}
    assert with_seq(b"not json", 7) == b"not json"
    assert problems({"id": "a", "device_id": "d", "seq": 3}) is None
    assert problems({"id": "a"}) == "missing device_id"
    assert problems({"id": 5, "device_id": "d"}) == "id is not a non-empty str"
    assert problems({"id": "a", "device_id": "d", "seq": "3"}) == "seq is not an int"
    assert problems([1]) == "not a JSON object but list"


def test_an_unreadable_acknowledgement_is_ignored(mosquitto, outbox, run) -> None:
    put_results(outbox, ["a"])
    pub = start(run, config(mosquitto, ack_timeout_s=60), outbox)
    assert wait_until(lambda: outbox.unacked() == 1)
    acknowledge(mosquitto, "a")  # type: ignore[arg-type]  # a string, not a list
    acknowledge(mosquitto, ["a"], seq=5)
    assert wait_until(lambda: outbox.depth() == 0)
    assert pub._e2e is not None and pub._e2e.highest_stored == 5 and pub._e2e.acknowledged == 1


def test_a_version_1_outbox_keeps_its_messages(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "v1.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE,"
        " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
        " created_at REAL NOT NULL, printed INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO messages (msg_id, topic, payload, qos, retain, created_at)"
        " VALUES ('old', 't', x'00', 1, 0, 0);"
        "PRAGMA user_version=1;"
    )
    db.close()
    with Outbox(path) as ob:
        (msg,) = ob.peek(5)
        assert msg.msg_id == "old" and msg.seq == 1 and msg.sent_at is None
        put_results(ob, ["new"])
        assert seqs(ob)["new"] == 2  # the old file's sequence goes on
        assert ob.mark_sent(["old"]) == 1 and ob.unacked() == 1
