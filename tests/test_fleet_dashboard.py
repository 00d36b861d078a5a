"""docs/grafana/edge-ocr-fleet.json: a Grafana dashboard over the fleet's PostgreSQL whose every query runs
on the tables and the view `edge-ocr ingest` creates (a real PostgreSQL, initdb on loopback), and covers
what issue 21 asks of a fleet view: devices online or unreachable, results per device, lag, degraded
reasons (and the bridges)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="the [fleet] extra (psycopg) is not installed")
from edge_ocr.bench.devpostgres import Postgres, postgres_bin  # noqa: E402
from edge_ocr.ingest.store import Row, Store  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "edge-ocr-fleet.json"


def sqls(doc: dict) -> list[str]:
    return [t["rawSql"] for p in doc["panels"] for t in p["targets"]]


def test_the_fleet_dashboard_covers_the_fleet_view() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    text = " ".join(sqls(doc))
    assert "edge_ocr_device_view" in text and "state" in text  # online / unreachable
    assert "GROUP BY device_id" in text  # results per device
    assert "percentile_cont(0.95)" in text  # lag
    assert "degraded_reason" in text
    assert "edge_ocr_bridges" in text
    assert all(p["datasource"]["type"] == "grafana-postgresql-datasource" for p in doc["panels"])


def test_every_query_runs_on_the_ingesters_schema() -> None:
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (scripts/test installs it)")
    pg = Postgres().start()
    try:
        store = Store(pg.dsn).open()
        msg = {"id": "r1", "device_id": "pi-a", "processed_at": "2026-01-01T00:00:00.000Z"}
        store.insert([Row("pi-a", "r1", 1, "edge-ocr/pi-a/result/x", msg)])
        store.device_state("pi-a", "status", b"online")
        store.device_state("pi-a", "health", b'{"problem": true, "reason": "disk"}')
        store.bridge_state("bridge-site-a", b"1")
        store.close()
        with psycopg.connect(pg.dsn) as conn:
            for sql in sqls(json.loads(DASHBOARD.read_text(encoding="utf-8"))):
                # Grafana's macro, as its PostgreSQL data source expands it.
                window = r"\1 BETWEEN now() - interval '100 years' AND now()"
                sql = re.sub(r"\$__timeFilter\((\w+)\)", window, sql)
                rows = conn.execute(sql).fetchall()
                assert rows, sql
    finally:
        pg.stop()
