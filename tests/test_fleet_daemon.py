"""A real daemon (`edge-ocr run`, `mqtt.delivery: end_to_end`) in the fleet's chain, loopback only:

    daemon -> site broker (30 min snapshots, as a site runs) -> bridge -> core -> ingester -> PostgreSQL

The daemon is killed -9 mid-batch and restarted; then the site broker is killed -9 with results it
acknowledged but had not passed on (its link to the core cut) and restarted. Every file's result must be
in PostgreSQL exactly once, and the daemon's outbox must drain once the ingester acknowledged them.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from daemon_harness import DEVICE, daemon_config, drop, names_in, tiny_png
from mqtt_broker import Mosquitto, wait_until

pytest.importorskip("psycopg", reason="the [fleet] extra (psycopg) is not installed")
from fleet_harness import IngestProcess, bridge_conf, fresh_database, rows  # noqa: E402

from edge_ocr.bench.devpostgres import Postgres, postgres_bin  # noqa: E402
from edge_ocr.bench.devproxy import TcpProxy  # noqa: E402
from edge_ocr.results import message_id  # noqa: E402


def outbox_depth(root: Path) -> int:
    path = root / "state" / "outbox.sqlite3"
    if not path.exists():
        return -1
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return int(db.execute("SELECT COUNT(*) FROM messages WHERE topic LIKE '%/result/%'").fetchone()[0])


def test_a_daemon_and_a_site_broker_killed_lose_nothing_end_to_end(tmp_path: Path, daemons) -> None:
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (scripts/test installs it)")
    pg = Postgres().start()
    core = Mosquitto(tmp_path / "core").start()
    proxy = TcpProxy(core.port)
    site = Mosquitto(tmp_path / "site", save_every_change=False, extra_conf=bridge_conf("site-0", proxy.port))
    dsn = fresh_database(pg.dsn, "fleet_daemon")
    ingester = IngestProcess(tmp_path, core, dsn, client_id="ingest-d")
    root = tmp_path / "box"
    try:
        site.start()
        ingester.start()
        cfg = daemon_config(root, site, engine={"workers": 1, "threads": 1, "precision": "fp32"})
        cfg["mqtt"].update(delivery="end_to_end", ack_timeout_s=3)
        d = daemons(cfg).start_ready(120)
        expected: set[str] = set()

        def put(i: int) -> None:
            data = tiny_png(f"R{i:03d}")
            name = f"f{i:03d}.png"
            drop(root / "inbox", name, data)
            expected.add(message_id(DEVICE, "inbox", name, hashlib.sha256(data).hexdigest()))

        for i in range(20):
            put(i)
        assert wait_until(lambda: len(rows(dsn)) >= 3, 120), d.tail()
        d.kill()  # mid-batch
        assert names_in(root / "inbox"), "the kill came after the whole batch"
        d.start_ready(120)
        # The site's link is cut: what the daemon sends now is acknowledged by the site broker only.
        proxy.cut()
        for i in range(20, 30):
            put(i)
        assert wait_until(lambda: names_in(root / "inbox") == set(), 120), d.tail()
        site.kill()  # loses its unsaved backlog (mosquitto #1855)
        proxy.restore()
        site.restart()

        assert wait_until(lambda: {r[1] for r in rows(dsn)} == expected, 120), (len(rows(dsn)), d.tail())
        assert len(rows(dsn)) == len(expected)  # exactly once
        assert wait_until(lambda: outbox_depth(root) == 0, 60), outbox_depth(root)
        # What the killed site broker had acknowledged came again from the daemon's outbox.
        assert d.log_has("not acknowledged by the fleet within"), d.tail()
        assert d.stop() == 0
    finally:
        ingester.stop()
        site.kill()
        core.kill()
        proxy.close()
        pg.stop()
