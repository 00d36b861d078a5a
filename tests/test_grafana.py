"""docs/grafana/edge-ocr.json (issue 20): a Grafana dashboard whose every query names metrics that a real
daemon's /metrics exposes, covering results/s, latency, outbox depth, degraded reasons, per-region
validity, alignment and engine precision."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from daemon_harness import daemon_config, drop, get, names_in, tiny_png
from mqtt_broker import free_port, wait_until

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "edge-ocr.json"


def queries(doc: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc["templating"]["list"]:
        out.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return out


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (a name before `{`, or the argument of label_values)."""
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))
    names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))
    return names


def exposed(text: str) -> set[str]:
    """Every family (# TYPE) and sample name in a Prometheus text exposition."""
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    names |= {m for m in re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}
    return names


def test_the_dashboard_is_importable_and_covers_what_operators_watch() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert doc["uid"] == "edge-ocr" and doc["__inputs"][0]["pluginId"] == "prometheus"
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in doc["panels"] if p["type"] != "row")
    titles = {p["title"] for p in doc["panels"]}
    assert {"Results/s", "Latency", "Outbox depth", "Degraded reasons", "Region validity",
            "Engine precision"} <= titles  # fmt: skip
    assert any(t.startswith("Alignment") for t in titles)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert all(metric_names(q) for q in queries(doc)), "a query that selects no metric"


def test_every_metric_the_dashboard_queries_is_in_a_live_metrics(tmp_path: Path, daemons) -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    wanted = set().union(*(metric_names(q) for q in queries(doc)))
    assert all(n.startswith("edge_ocr_") for n in wanted), wanted
    root = tmp_path / "box"
    port = free_port()
    d = daemons(daemon_config(root, http={"enabled": True, "port": port, "api": True})).start_ready()
    drop(root / "inbox", "metrics.png", tiny_png("metrics"))
    assert wait_until(lambda: names_in(root / "done" / "inbox") == {"metrics.png"}, 60), d.tail()
    code, text = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    missing = sorted(wanted - exposed(text))
    assert not missing, f"queried by the dashboard, not in /metrics: {missing}"
    # The file's latency and the engine's precision have samples once a file was read.
    assert re.search(r'^edge_ocr_file_latency_seconds\{.*quantile="0.95"', text, re.M)
    assert re.search(r'^edge_ocr_engine_precision\{.*role="det"', text, re.M)
    assert d.stop() == 0
