"""`edge-ocr ingest`: a real ingester process, a real mosquitto, a real PostgreSQL cluster (initdb, loopback).

Results land exactly once; duplicates are absorbed and counted; a tampered or partial message is refused
with its reason and counted, never stored; the acknowledgement is published only after the commit, so
an end_to_end device drains its outbox; an ingester killed -9 and restarted loses nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import HOST, Mosquitto, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge_ocr.config import MqttConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish import Topics
from edge_ocr.publish.mqtt import MqttPublisher

psycopg = pytest.importorskip("psycopg", reason="the [fleet] extra (psycopg) is not installed")
from fleet_harness import REPO, IngestProcess, fresh_database, rows  # noqa: E402

from edge_ocr.bench.devpostgres import Postgres, postgres_bin  # noqa: E402

PREFIX = "edge-ocr"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Postgres]:
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (scripts/test installs it)")
    pg = Postgres().start()
    yield pg
    pg.stop()


@pytest.fixture
def dsn(cluster: Postgres, request: pytest.FixtureRequest) -> str:
    """A fresh database per test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return fresh_database(cluster.dsn, name)


@pytest.fixture
def ingesters(tmp_path: Path) -> Iterator[list[IngestProcess]]:
    made: list[IngestProcess] = []
    yield made
    for p in made:
        p.stop()


def ingester(made: list[IngestProcess], tmp_path: Path, broker: Mosquitto, dsn: str) -> IngestProcess:
    p = IngestProcess(tmp_path, broker, dsn)
    made.append(p)
    return p.start()


class Device:
    """A test client publishing raw payloads as a device would (QoS 1, waits for each PUBACK)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{os.getpid()}-{id(self)}")
        self.client.connect(HOST, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def result(self, device: str, msg_id: str, seq: int | None = None, **extra: Any) -> None:
        msg: dict[str, Any] = {"id": msg_id, "device_id": device, "text": msg_id, **extra}
        if seq is not None:
            msg["seq"] = seq
        self.send(f"{PREFIX}/{device}/result/inbox", json.dumps(msg))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(mosquitto: Mosquitto) -> Iterator[Device]:
    d = Device(mosquitto)
    yield d
    d.close()


def test_results_land_exactly_once_and_duplicates_are_absorbed(mosquitto, dsn, tmp_path, ingesters, device):
    ing = ingester(ingesters, tmp_path, mosquitto, dsn)
    for i in range(20):
        device.result("pi-a", f"a{i}", seq=i + 1)
    for i in range(5):  # a republish of the first five (same id): absorbed
        device.result("pi-a", f"a{i}", seq=i + 1)
    device.result("pi-b", "a0", seq=1)  # the same id from another device is another result
    assert wait_until(lambda: ing.metric("edge_ocr_ingest_received_total") >= 26, 15), ing.log()
    assert wait_until(lambda: ing.metric("edge_ocr_ingest_duplicates_total") == 5, 15), ing.log()
    stored = rows(dsn)
    assert len(stored) == 21
    assert sorted(r[1] for r in stored if r[0] == "pi-a") == sorted(f"a{i}" for i in range(20))
    assert ing.metric("edge_ocr_ingest_rows_total") == 21
    (message,) = rows(dsn, "SELECT message FROM edge_ocr_results WHERE device_id = 'pi-b'")
    assert message[0] == {"id": "a0", "device_id": "pi-b", "text": "a0", "seq": 1}


def test_tampered_or_partial_messages_are_refused_with_their_reason(
    mosquitto, dsn, tmp_path, ingesters, device
):
    ing = ingester(ingesters, tmp_path, mosquitto, dsn)
    topic = f"{PREFIX}/pi-a/result/inbox"
    device.send(topic, b'{"id": "x1", "device_id": "pi-a", "text": "cut he')  # partial
    device.send(topic, json.dumps({"device_id": "pi-a", "text": "no id"}))
    device.send(topic, json.dumps({"id": 42, "device_id": "pi-a"}))
    device.send(topic, json.dumps({"id": "x2", "device_id": "pi-a", "seq": "7"}))
    device.send(topic, json.dumps({"id": "x3", "device_id": "pi-other"}))  # tampered: not its topic
    device.send(topic, json.dumps(["x4"]))
    device.result("pi-a", "good", seq=1)
    assert wait_until(lambda: ing.metric("edge_ocr_ingest_rows_total") == 1, 15), ing.log()

    def rejected(reason: str) -> float:
        return ing.metric(f'edge_ocr_ingest_rejected_total{{reason="{reason}"}}')

    assert rejected("not JSON") == 1
    assert rejected("missing id") == 1
    assert rejected("id is not a non-empty str") == 1
    assert rejected("seq is not an int") == 1
    assert rejected("device_id is not the topic's device") == 1
    assert rejected("not a JSON object but list") == 1
    assert [r[1] for r in rows(dsn)] == ["good"]
    assert "refused a message on edge-ocr/pi-a/result/inbox: missing id" in ing.log()


def test_device_status_and_health_land_in_a_table(mosquitto, dsn, tmp_path, ingesters, device):
    device.send(f"{PREFIX}/pi-a/status", "online", retain=True)
    device.send(f"{PREFIX}/pi-a/health", json.dumps({"problem": True, "reason": "disk"}), retain=True)
    device.send("$SYS/broker/connection/site-1/state", "0", retain=True)
    ingester(ingesters, tmp_path, mosquitto, dsn)
    sql = "SELECT device_id, status, health FROM edge_ocr_devices"
    assert wait_until(lambda: rows(dsn, sql) == [("pi-a", "online", {"problem": True, "reason": "disk"})], 15)
    assert wait_until(lambda: rows(dsn, "SELECT name, state FROM edge_ocr_bridges") == [("site-1", "0")], 15)
    view = "SELECT device_id, state, degraded, degraded_reason FROM edge_ocr_device_view"
    # Online by its retained status, but never heard from: its site broker may be gone.
    assert rows(dsn, view) == [("pi-a", "unreachable", True, "disk")]
    device.send(f"{PREFIX}/pi-a/stats", json.dumps({"processed": 1}))
    assert wait_until(lambda: rows(dsn, view) == [("pi-a", "online", True, "disk")], 15)
    device.send(f"{PREFIX}/pi-a/status", "offline", retain=True)
    assert wait_until(lambda: rows(dsn, view)[0][1] == "offline", 15)


def test_the_acknowledgement_follows_the_commit_and_an_end_to_end_device_drains(
    mosquitto, cluster, dsn, tmp_path, ingesters
):
    """A real publisher and outbox in end_to_end mode: nothing is deleted while the database refuses."""
    stop = threading.Event()
    cfg = MqttConfig(url=mosquitto.url, client_id="pi-e2e", backoff_min_s=0.1, backoff_max_s=0.5,
                     delivery="end_to_end", ack_timeout_s=60)  # type: ignore[call-arg]  # fmt: skip
    topics = Topics(PREFIX, "pi-e2e")
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        for i in range(50):
            payload = json.dumps({"id": f"r{i}", "device_id": "pi-e2e", "text": str(i)}).encode()
            outbox.put(f"r{i}", topics.result("inbox"), payload)
        ing = ingester(ingesters, tmp_path, mosquitto, dsn)
        # The database goes away: the ingester can store nothing, so it acknowledges nothing.
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {dsn.rsplit('/', 1)[1]} ALLOW_CONNECTIONS false")
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dsn.rsplit("/", 1)[1],),
            )
        pub = MqttPublisher(cfg, "pi-e2e", outbox, stop)
        pub.start()
        try:
            assert wait_until(lambda: outbox.unacked() == 50, 15)  # the broker took them all
            assert wait_until(lambda: ing.metric("edge_ocr_ingest_store_errors_total") >= 1, 15), ing.log()
            assert ing.health()[0] == 503
            time.sleep(1.0)  # a window in which a premature watermark would have deleted rows
            assert outbox.depth() == 50
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE {dsn.rsplit('/', 1)[1]} ALLOW_CONNECTIONS true")
            t0 = time.monotonic()
            assert wait_until(lambda: outbox.depth() == 0, 30), ing.log()
            print(f"outbox of 50 drained {time.monotonic() - t0:.2f}s after the database came back")
            stored = rows(dsn)
            assert sorted(r[1] for r in stored) == sorted(f"r{i}" for i in range(50))
            assert all(r[2] is not None for r in stored)  # each with its outbox sequence
            assert ing.health()[0] == 200
        finally:
            stop.set()
            pub.join(15)


def test_an_ingester_killed_and_restarted_loses_nothing(mosquitto, dsn, tmp_path, ingesters, device):
    ing = ingester(ingesters, tmp_path, mosquitto, dsn)
    for i in range(100):
        device.result("pi-k", f"k{i:03d}", seq=i + 1)
    ing.kill()  # mid-stream: what it had not committed is not acknowledged
    for i in range(100, 200):  # while it is down: queued in its persistent session
        device.result("pi-k", f"k{i:03d}", seq=i + 1)
    ing.start()
    assert wait_until(lambda: len(rows(dsn)) == 200, 30), ing.log()
    assert sorted(r[1] for r in rows(dsn)) == [f"k{i:03d}" for i in range(200)]
    # And the device's acknowledgement says the highest sequence stored is the last one.
    got: list[bytes] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"wm-{os.getpid()}")
    sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
    sub.connect(HOST, mosquitto.port)
    sub.subscribe(f"{PREFIX}/ack/pi-k", 1)
    sub.loop_start()
    try:
        assert wait_until(lambda: bool(got) and json.loads(got[-1])["seq"] == 200, 10), got
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_flags_are_checked_before_anything_starts(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "edge_ocr", "ingest", "--mqtt", "http://x", "--dsn", "postgresql://u:pw@h/db"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "mqtt: " in out.stderr and "no password in the DSN" in out.stderr
