"""The fleet's processes for tests: the ingester as a real process (`python -m edge_ocr ingest`, flags
alone), a device (a real publisher and outbox), a fresh database, and reading rows back. Used by
test_ingest.py, test_fleet_faults.py, test_fleet_daemon.py and test_fleet_full_chain.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from mqtt_broker import HOST, Mosquitto, free_port, wait_until

from edge_ocr.config import MqttConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish import Topics
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.results import iso

REPO = Path(__file__).resolve().parents[1]
PREFIX = "edge-ocr"
RESULTS = "SELECT device_id, id, seq FROM edge_ocr_results ORDER BY device_id, id"


def rows(dsn: str, sql: str = RESULTS) -> list:
    try:
        with psycopg.connect(dsn) as conn:
            return conn.execute(sql).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


def fresh_database(cluster_dsn: str, name: str) -> str:
    """A new, empty database in the cluster; its DSN."""
    with psycopg.connect(cluster_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return cluster_dsn.rsplit("/", 1)[0] + f"/{name}"


class IngestProcess:
    """`python -m edge_ocr ingest` with flags alone, on its own HTTP port."""

    def __init__(
        self, workdir: Path, broker: Mosquitto, dsn: str, client_id: str = "ingest-test",
        extra: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.workdir = workdir
        self.client_id = client_id
        self.http_port = free_port()
        self.args = [sys.executable, "-m", "edge_ocr", "ingest", "--mqtt", broker.url, "--dsn", dsn,
                     "--client-id", client_id, "--http", f"{HOST}:{self.http_port}", *extra]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> IngestProcess:
        self.starts += 1
        log = open(self.workdir / f"ingest-{self.client_id}-{self.starts}.log", "wb")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        assert wait_until(lambda: self.health()[0] == 200, 20), self.log()
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def health(self) -> tuple[int, dict[str, Any]]:
        code, body = self.get("/healthz")
        return code, (json.loads(body) if body else {})

    def metric(self, name: str) -> float:
        """The value of one sample line (`name` includes its labels), 0 when absent."""
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        logs = sorted(self.workdir.glob(f"ingest-{self.client_id}-*.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)


class Device:
    """One device: its outbox and its publisher on a site broker."""

    def __init__(self, name: str, site: Mosquitto, workdir: Path, delivery: str) -> None:
        self.name = name
        self.topics = Topics(PREFIX, name)
        self.outbox = Outbox(workdir / f"{name}.sqlite3", max_messages=100_000)
        self.stop = threading.Event()
        cfg = MqttConfig(url=site.url, client_id=name, backoff_min_s=0.1, backoff_max_s=0.5,  # type: ignore[call-arg]
                         max_inflight=50, delivery=delivery, ack_timeout_s=4)  # fmt: skip
        self.publisher = MqttPublisher(cfg, name, self.outbox, self.stop)
        self.n = 0

    def start(self) -> Device:
        self.publisher.start()
        return self

    def produce(self, count: int) -> None:
        for _ in range(count):
            msg_id = f"{self.name}-{self.n:05d}"
            body = {"id": msg_id, "device_id": self.name, "text": str(self.n), "processed_at": iso()}
            self.outbox.put(msg_id, self.topics.result("inbox"), json.dumps(body).encode())
            self.n += 1

    def close(self) -> None:
        self.stop.set()
        self.publisher.join(15)
        self.outbox.close()


def bridge_conf(name: str, port: int) -> list[str]:
    """A site broker's bridge to the core, as docs/fleet.md and the Ansible role write it (faster timers)."""
    return [
        "max_queued_messages 100000",  # the default 1000 drops silently past it, the bridge included
        "max_inflight_messages 100",
        f"connection {name}",
        f"address 127.0.0.1:{port}",
        "bridge_protocol_version mqttv311",
        "cleansession false",  # a persistent session on the core: what it queues for us survives
        "local_cleansession false",  # matched (#2604: true + false loses the queue on 2.0.11; #2634)
        f"remote_clientid bridge-{name}",
        "notifications true",  # $SYS/broker/connection/bridge-<name>/state: 1, or 0 (also its will)
        "keepalive_interval 5",
        "restart_timeout 1 2",
        "try_private true",
        f"topic {PREFIX}/+/result/# out 1",
        f"topic {PREFIX}/+/status out 1",
        f"topic {PREFIX}/+/health out 1",
        f"topic {PREFIX}/ack/# in 1",
    ]


def bridge_to_cluster(name: str, ports: list[int]) -> list[str]:
    """As the edge_ocr_site role writes it for a NATS core: every node listed, no bridge bit."""
    return [
        "max_queued_messages 100000",
        f"connection {name}",
        "address " + " ".join(f"127.0.0.1:{p}" for p in ports),
        "round_robin false",
        "bridge_protocol_version mqttv311",
        "try_private false",  # NATS refuses the bridge flag in the protocol version
        "cleansession false",
        "local_cleansession false",
        f"remote_clientid bridge-{name}",
        "notifications false",  # NATS refuses publishing to $SYS topics
        "keepalive_interval 5",
        "restart_timeout 1 2",
        f"topic {PREFIX}/+/result/# out 1",
        f"topic {PREFIX}/+/status out 1",
        f"topic {PREFIX}/ack/# in 1",
    ]
