"""The fleet's chain with a clustered core, every process real, loopback only:

    3 devices (publisher + outbox, delivery: end_to_end) -> 2 mosquitto site brokers -> bridges through
    cuttable TCP proxies, each knowing all 3 core nodes -> a 3-node NATS cluster (JetStream, MQTT
    gateway) -> 2 ingesters on different nodes -> PostgreSQL

NATS 2.9's MQTT gateway grants ``$share/`` subscriptions but matches nothing with them, so the ingesters
run with ``--group none``: both take every result and PostgreSQL's unique key absorbs the overlap.

Faults during the run: the core node both bridges use is killed -9 (the bridges move to the next node)
and restarted on its data, a bridge link is cut and restored, an ingester is killed -9 and restarted.
Every result must be in PostgreSQL exactly once and every outbox must drain.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_broker import Mosquitto, wait_until

pytest.importorskip("psycopg", reason="the [fleet] extra (psycopg) is not installed")
from fleet_harness import PREFIX, Device, IngestProcess, fresh_database, rows  # noqa: E402

from edge_ocr.bench.devnats import NatsCluster, nats_binary  # noqa: E402
from edge_ocr.bench.devpostgres import Postgres, postgres_bin  # noqa: E402
from edge_ocr.bench.devproxy import TcpProxy  # noqa: E402

BURST = 60


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[Postgres]:
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (scripts/test installs it)")
    pg = Postgres().start()
    yield pg
    pg.stop()


def test_end_to_end_through_a_3_node_nats_core_under_faults(cluster: Postgres, tmp_path: Path) -> None:
    if nats_binary() is None:
        pytest.fail("nats-server is not installed: apt-get install nats-server (scripts/test installs it)")
    dsn = fresh_database(cluster.dsn, "fleet_nats")
    core = NatsCluster(3, tmp_path / "nats").start()
    # Bridges reach node 0 first through a proxy each (so a link can be cut), then nodes 1 and 2.
    proxies = [TcpProxy(core.mqtt_ports[0]) for _ in range(2)]
    sites = [
        Mosquitto(tmp_path / f"site-{i}", save_every_change=False,
                  extra_conf=bridge_to_cluster(f"site-{i}", [p.port, *core.mqtt_ports[1:]]))
        for i, p in enumerate(proxies)
    ]  # fmt: skip

    class Node:  # IngestProcess reads `url`
        def __init__(self, i: int) -> None:
            self.url = core.url(i)

    ingesters = [
        IngestProcess(tmp_path, Node(i + 1), dsn, client_id=f"ingest-{i}", extra=("--group", "none"))  # type: ignore[arg-type]
        for i in range(2)
    ]
    devices: list[Device] = []
    try:
        for s in sites:
            s.start()
        for ing in ingesters:
            ing.start()
        devices = [
            Device("pi-a", sites[0], tmp_path, "end_to_end").start(),
            Device("pi-b", sites[0], tmp_path, "end_to_end").start(),
            Device("pi-c", sites[1], tmp_path, "end_to_end").start(),
        ]
        t0 = time.monotonic()
        for d in devices:
            d.produce(BURST)
        # The core node the bridges use dies: they move to the next node.
        core.kill(0)
        for d in devices:
            d.produce(BURST)
        time.sleep(3)
        core.restart(0)
        # A bridge link cut and restored; an ingester killed -9 and restarted.
        proxies[1].cut()
        for d in devices:
            d.produce(BURST)
        time.sleep(2)
        proxies[1].restore()
        ingesters[0].kill()
        for d in devices:
            d.produce(BURST)
        ingesters[0].start()

        total = sum(d.n for d in devices)
        assert wait_until(lambda: all(d.outbox.depth() == 0 for d in devices), 120), (
            [d.outbox.depth() for d in devices], len(rows(dsn)), core.log_text()[-2000:])  # fmt: skip
        drained = time.monotonic() - t0
        stored = rows(dsn)
        assert len(stored) == total
        expected = {(d.name, f"{d.name}-{i:05d}") for d in devices for i in range(d.n)}
        assert {(r[0], r[1]) for r in stored} == expected
        dups = sum(i.metric("edge_ocr_ingest_duplicates_total") for i in ingesters)
        print(f"\nNATS core, 3 nodes: {total} results stored exactly once; outboxes drained {drained:.1f}s "
              f"after the first result; {dups:.0f} duplicates absorbed")  # fmt: skip
    finally:
        for d in devices:
            d.close()
        for ing in ingesters:
            ing.stop()
        for s in sites:
            s.kill()
        for p in proxies:
            p.close()
        core.stop()
