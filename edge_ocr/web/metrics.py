"""/metrics with prometheus_client: the daemon's status read at each scrape, and the API's own counters.

Each app has its own registry (no process-wide state: tests and reloads build several). The names are
those the hand-written exposition had; every sample carries `device_id` and `version`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_ocr import __version__


class StatusCollector(Collector):
    """Turns `status()` (the daemon's or serve's) into metric families at scrape time."""

    def __init__(self, status: Callable[[], dict[str, Any]], healthy: Callable[[], bool], device_id: str):
        self._status = status
        self._healthy = healthy
        self._labels = {"device_id": device_id, "version": __version__}

    def _family(self, kind: str, name: str, doc: str, samples: list[tuple[dict[str, str], float]]) -> Metric:
        extra = sorted({k for labels, _ in samples for k in labels})
        names = [*self._labels, *extra]
        fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=names)
        for labels, value in samples:
            fam.add_metric([*self._labels.values(), *(labels.get(k, "") for k in extra)], value)
        return fam

    def collect(self) -> Iterator[Metric]:
        st = self._status()
        broker = st.get("broker") or {}
        storage = (st.get("storage") or {}).get("folders") or []
        one = [
            ("counter", "edge_ocr_files_processed_total", "Files read successfully.", st.get("processed")),
            ("counter", "edge_ocr_files_failed_total", "Files moved to failed/.", st.get("failed")),
            ("counter", "edge_ocr_files_skipped_total", "Duplicate files skipped.", st.get("skipped")),
            ("gauge", "edge_ocr_queue_depth", "Files waiting for a worker.", st.get("queued")),
            ("gauge", "edge_ocr_outbox_depth", "Messages waiting for the broker.", st.get("outbox_depth")),
            ("gauge", "edge_ocr_outbox_full", "1 while back pressure holds new files.",
             st.get("outbox_full")),
            ("gauge", "edge_ocr_outbox_unacked",
             "Results sent to the broker, not yet acknowledged by the fleet (delivery: end_to_end).",
             st.get("outbox_unacked")),
            ("gauge", "edge_ocr_broker_connected", "1 while the broker accepts us.", broker.get("connected")),
            ("gauge", "edge_ocr_healthy", "1 while the pipeline is healthy.", self._healthy()),
            ("gauge", "edge_ocr_degraded",
             "1 while a storage problem (low space, read-only or missing folder) holds new files.",
             st.get("degraded")),
            ("gauge", "edge_ocr_uptime_seconds", "Seconds since start.", st.get("uptime_s")),
        ]  # fmt: skip
        for kind, name, doc, value in one:
            if value is not None or name in ("edge_ocr_broker_connected",):
                yield self._family(kind, name, doc, [({}, float(value or 0))])
        yield self._family(
            "gauge", "edge_ocr_storage_free_bytes",
            "Free bytes on the filesystem of each folder the daemon writes to.",
            [({"folder": f["folder"], "path": f["path"]}, f["free_bytes"]) for f in storage
             if f["free_bytes"] is not None],
        )  # fmt: skip
        latency = [(q, st.get(key)) for q, key in (("0.5", "latency_p50_s"), ("0.95", "latency_p95_s"))]
        yield self._family(
            "gauge", "edge_ocr_file_latency_seconds",
            "A file's age (its mtime) when its result is stored, p50 and p95 over the last 1000 files.",
            [({"quantile": q}, float(v)) for q, v in latency if v is not None],
        )  # fmt: skip
        model = st.get("model") or {}
        yield self._family(
            "gauge", "edge_ocr_engine_precision",
            "1 per model role: the precision it runs on this device (auto: INT8 where it passed the gate "
            "and is faster here), its model set and file.",
            [({"set": str(model.get("set") or ""), "role": role, "precision": str(m.get("precision") or ""),
               "file": str(m.get("file") or "")}, 1.0)
             for role, m in model.items() if isinstance(m, dict)],
        )  # fmt: skip
        cameras = [(n, c) for n, c in (st.get("sources") or {}).items() if c.get("type") == "camera"]
        yield self._family(
            "counter", "edge_ocr_camera_frames_analysed", "Frames each camera's regions were read on.",
            [({"source": n}, float(c.get("frames_analysed") or 0)) for n, c in cameras],
        )  # fmt: skip
        aligned = [(n, c["alignment"]) for n, c in cameras if c.get("alignment")]
        for metric, key, doc in (
            ("edge_ocr_camera_alignment_shift_px", "shift_px", "How far the view moved from the reference."),
            ("edge_ocr_camera_alignment_angle_degrees", "angle_deg", "Its turn, degrees."),
            ("edge_ocr_camera_alignment_score", "score", "Worst patch match score."),
            ("edge_ocr_camera_aligned", "ok", "1 while frames align."),
        ):
            yield self._family("gauge", metric, doc, [({"source": n}, float(a[key])) for n, a in aligned])
        invalid = [
            ({"source": n, "region": r, "reason": e.get("reason") or ""}, float(not e["valid"]))
            for n, c in cameras
            for r, e in (c.get("regions") or {}).items()
        ]
        yield self._family(
            "gauge", "edge_ocr_region_invalid",
            "1 while a camera region's last report was not valid (a rule, low confidence, alignment).",
            invalid,
        )  # fmt: skip
        yield self._family(
            "gauge", "edge_ocr_storage_ok",
            "1 while a folder is usable; 0 with its condition (low_space, full, read_only, ...).",
            [({"folder": f["folder"], "path": f["path"], "condition": f["condition"] or ""}, int(f["ok"]))
             for f in storage],
        )  # fmt: skip


class ApiMetrics:
    """The API's counters, in the app's registry."""

    def __init__(self, registry: CollectorRegistry, device_id: str, pending: Callable[[], float]) -> None:
        labels = {"device_id": device_id, "version": __version__}
        self.requests = Counter(
            "edge_ocr_api_requests", "POST /api/ocr answers by status code.", ["code", *labels],
            registry=registry,
        )
        self._labels = labels
        self.latency = Histogram(
            "edge_ocr_api_request_seconds", "POST /api/ocr time from arrival to answer (200 only).",
            list(labels), registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, float("inf")),
        ).labels(**labels)
        self.cache_hits = Counter(
            "edge_ocr_api_cache_hits", "POST /api/ocr answered from the result cache.", list(labels),
            registry=registry,
        ).labels(**labels)
        Gauge("edge_ocr_api_pending", "API requests decoding, waiting for the engine or running.",
              list(labels), registry=registry).labels(**labels).set_function(pending)  # fmt: skip

    def answered(self, code: int) -> None:
        self.requests.labels(code=str(code), **self._labels).inc()
