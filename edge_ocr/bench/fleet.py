"""`edge-ocr bench --fleet`: results/s through the fleet's chain, end-to-end latency, rows/s per ingester.

The chain, every process real, on loopback: devices (publisher + SQLite outbox, ``delivery: end_to_end``)
-> mosquitto site brokers -> bridges through TCP proxies -> one mosquitto core -> ingesters (one shared
subscription, ``python -m edge_ocr ingest``) -> a throw-away PostgreSQL (initdb). Two phases:

- **burst**: every device holds a backlog of ``--burst`` results and starts at once: results/s from the
  first send to the last commit, and the time for every outbox to drain (the acknowledgements).
- **steady**: each device produces ``--rate`` results/s for ``--seconds``; the latency of each result is
  its commit time (PostgreSQL's ``stored_at``) minus its ``processed_at`` (same clock): median and p95.
  With ``--faults`` the first site's bridge link is cut for a third of the run and the first ingester
  is killed -9 and restarted halfway.

Needs mosquitto, PostgreSQL's server binaries (Debian's postgresql) and the [fleet] extra.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

from edge_ocr.bench.devbroker import HOST, Mosquitto, free_port, wait_until
from edge_ocr.bench.devnats import NatsCluster
from edge_ocr.bench.devpostgres import Postgres
from edge_ocr.bench.devproxy import Uplink
from edge_ocr.config import MqttConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.publish.topics import Topics
from edge_ocr.results import iso

PREFIX = "edge-ocr"


def bridge_conf(name: str, ports: list[int], nats: bool = False) -> list[str]:
    """The site broker's bridge as the edge_ocr_site Ansible role writes it, with short timers."""
    return [
        "max_queued_messages 1000000", "max_inflight_messages 100", f"connection {name}",
        "address " + " ".join(f"{HOST}:{p}" for p in ports), "bridge_protocol_version mqttv311",
        "cleansession false", "local_cleansession false", f"remote_clientid bridge-{name}",
        f"notifications {'false' if nats else 'true'}", "keepalive_interval 5", "restart_timeout 1 2",
        f"try_private {'false' if nats else 'true'}",
        f"topic {PREFIX}/+/result/# out 1", f"topic {PREFIX}/+/status out 1", f"topic {PREFIX}/ack/# in 1",
    ]  # fmt: skip


class _Ingester:
    def __init__(self, url: str, dsn: str, name: str, workdir: Path, group: str = "ingest") -> None:
        self.http = free_port()
        self.args = [sys.executable, "-m", "edge_ocr", "ingest", "--mqtt", url, "--dsn", dsn,
                     "--client-id", name, "--http", f"{HOST}:{self.http}", "--group", group]  # fmt: skip
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(lambda: self.metric("edge_ocr_ingest_broker_connected") == 1.0, 30):
            raise RuntimeError(f"the ingester did not start: {self.log.read_text()[-2000:]}")

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.http}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


class _Device:
    def __init__(self, name: str, site: Mosquitto, workdir: Path) -> None:
        self.name, self.topics, self.n = name, Topics(PREFIX, name), 0
        self.outbox = Outbox(workdir / f"{name}.sqlite3", max_messages=1_000_000)
        self.stop = threading.Event()
        cfg = MqttConfig(url=site.url, client_id=name, backoff_min_s=0.1, backoff_max_s=0.5,  # type: ignore[call-arg]
                         max_inflight=100, delivery="end_to_end", ack_timeout_s=10)  # fmt: skip
        self.publisher = MqttPublisher(cfg, name, self.outbox, self.stop)

    def produce(self, count: int) -> None:
        for _ in range(count):
            msg_id = f"{self.name}-{self.n:06d}"
            body = {"id": msg_id, "device_id": self.name, "text": str(self.n), "processed_at": iso()}
            self.outbox.put(msg_id, self.topics.result("bench"), json.dumps(body).encode())
            self.n += 1

    def close(self) -> None:
        self.stop.set()
        self.publisher.join(15)
        self.outbox.close()


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM edge_ocr_results").fetchone()
    return int(row[0]) if row else 0


def _latency(dsn: str, since: float) -> tuple[float, float, int]:
    """Median and p95 seconds from processed_at to stored_at of the results processed after `since`."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.95) WITHIN GROUP"
            " (ORDER BY d), count(*) FROM (SELECT extract(epoch FROM stored_at"
            " - (message->>'processed_at')::timestamptz) AS d FROM edge_ocr_results"
            " WHERE (message->>'processed_at')::timestamptz >= to_timestamp(%s)) x",
            (since,),
        ).fetchone()
    assert row is not None
    return float(row[0] or 0), float(row[1] or 0), int(row[2])


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="edge-ocr-fleet-bench-"))
    pg = Postgres().start()
    # Snapshots every 10 s, not at every change: the dev broker's default (a full snapshot written per
    # message) caps a broker with a persistent subscriber near 150 messages/s.
    sized = ["max_queued_messages 1000000", "max_inflight_messages 100", "autosave_interval 10"]
    nats = NatsCluster(3, work / "nats").start() if args.core == "nats" else None
    core = None if nats else Mosquitto(work / "core", save_every_change=False, extra_conf=sized).start()
    # A site reaches every core node through its own uplink (a proxy per node): cutting it isolates the
    # site, where a proxy to one node only would let the bridge move to the next node.
    core_ports = nats.mqtt_ports if nats else [core.port]  # type: ignore[union-attr]
    proxies = [Uplink(core_ports) for _ in range(args.sites)]
    confs = [["autosave_interval 60", *bridge_conf(f"site-{i}", p.ports, bool(nats))]
             for i, p in enumerate(proxies)]  # fmt: skip
    sites = [Mosquitto(work / f"site-{i}", save_every_change=False, extra_conf=c)
             for i, c in enumerate(confs)]  # fmt: skip
    # NATS's MQTT gateway has no shared subscriptions: each ingester takes everything (on its own node).
    ingesters = [_Ingester(nats.url(1 + i % 2) if nats else core.url, pg.dsn, f"ingest-{i}", work,  # type: ignore[union-attr]
                           "none" if nats else "ingest") for i in range(args.ingesters)]  # fmt: skip
    devices: list[_Device] = []
    try:
        for s in sites:
            s.start()
        for ing in ingesters:
            ing.start()
        devices = [_Device(f"pi-{i:02d}", sites[i % len(sites)], work) for i in range(args.devices)]
        for d in devices:
            d.produce(args.burst)
        total = args.burst * len(devices)
        t0 = time.monotonic()
        for d in devices:
            d.publisher.start()
        if not wait_until(lambda: _count(pg.dsn) >= total, 300, 0.05):
            raise RuntimeError(f"only {_count(pg.dsn)} of {total} results stored")
        stored_s = time.monotonic() - t0
        wait_until(lambda: all(d.outbox.depth() == 0 for d in devices), 120, 0.05)
        drained_s = time.monotonic() - t0
        rows = [ing.metric("edge_ocr_ingest_rows_total") for ing in ingesters]
        core_text = "a 3-node NATS core" if nats else "1 mosquitto core"
        print(f"fleet burst: {len(devices)} devices, {len(sites)} site brokers, {core_text}, "
              f"{len(ingesters)} ingesters: {total} results stored in {stored_s:.2f}s = "
              f"{total / stored_s:.0f} results/s through the chain; outboxes drained (acknowledged) "
              f"after {drained_s:.2f}s")  # fmt: skip
        print("  rows/s per ingester: " + ", ".join(f"{r / stored_s:.0f}" for r in rows))

        since = time.time()
        per_tick = max(1, round(args.rate / 10))
        ticks = int(args.seconds * 10)
        for tick in range(ticks):
            if args.faults and tick == ticks // 3:
                proxies[0].cut()
            if args.faults and tick == 2 * ticks // 3:
                proxies[0].restore()
            if args.faults and tick == ticks // 2:
                ingesters[0].kill()
                ingesters[0].start()
                if nats is not None:  # and the core node the bridges use
                    nats.kill(0)
            if nats is not None and args.faults and tick == 3 * ticks // 4:
                nats.restart(0)
            for d in devices:
                d.produce(per_tick)
            time.sleep(0.1)
        total = sum(d.n for d in devices)
        if not wait_until(lambda: _count(pg.dsn) >= total, 300, 0.05):
            raise RuntimeError(f"only {_count(pg.dsn)} of {total} results stored")
        median, p95, n = _latency(pg.dsn, since)
        faults = "no faults"
        if args.faults:
            faults = "with a bridge link cut, an ingester killed -9" + (
                " and a core node killed -9" if nats else ""
            )
        print(f"fleet steady ({faults}): {n} results at {per_tick * 10 * len(devices)}/s: end-to-end latency"
              f" median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")  # fmt: skip
        return 0
    finally:
        for d in devices:
            d.close()
        for ing in ingesters:
            ing.stop()
        for s in sites:
            s.kill()
        if core is not None:
            core.kill()
        if nats is not None:
            nats.stop()
        for p in proxies:
            p.close()
        pg.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=3, help="--fleet: devices (default 3)")
    parser.add_argument("--sites", type=int, default=2, help="--fleet: site brokers (default 2)")
    parser.add_argument("--ingesters", type=int, default=2, help="--fleet: ingesters (default 2)")
    parser.add_argument("--burst", type=int, default=1000, help="--fleet: backlog per device (default 1000)")
    parser.add_argument("--rate", type=float, default=20, help="--fleet: steady results/s per device")
    parser.add_argument("--seconds", type=float, default=6, help="--fleet: steady phase length")
    parser.add_argument("--faults", action="store_true", help="--fleet: cut a bridge, kill an ingester")
    parser.add_argument("--core", choices=["mosquitto", "nats"], default="mosquitto",
                        help="--fleet: one mosquitto, or a 3-node NATS cluster (nats-server)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-ocr bench --fleet", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
