"""Health, status and stats: what /healthz, /metrics, cmd/stats, STATUS= and the retained MQTT health
say about the daemon. Reads the shared state; changes nothing."""

from __future__ import annotations

import time
from typing import Any

from edge_ocr.daemon.state import STUCK_AFTER_S, Shared
from edge_ocr.sources.camera import CameraSource


def camera_healthy(camera: CameraSource) -> bool:
    """Threads alive, supervisor beating, analysis not stuck; a disconnected camera is not unhealthy."""
    now = time.monotonic()
    busy = camera.analysis_busy_since
    return camera.alive() and now - camera.heartbeat < 60 and (busy is None or now - busy < STUCK_AFTER_S)


class Health:
    """The daemon's health and status, read from the shared state."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def stuck_workers(self) -> list[str]:
        return self.shared.beats.stuck()

    def healthy(self) -> bool:
        gen = self.shared.gen
        if gen is None or self.shared.stop.is_set():
            return False
        if any(not t.is_alive() for t in gen.workers) or self.stuck_workers():
            return False
        now = time.monotonic()
        if not all(camera_healthy(c) for c in gen.cameras.values()):
            return False
        return all(now - s.heartbeat < max(60.0, 3 * s.settings.rescan_s) for s in gen.sources.values())

    def storage(self) -> dict[str, Any]:
        """The storage guard's view, plus whether the outbox is open."""
        guard = self.shared.guard
        snap: dict[str, Any] = (
            guard.snapshot()
            if guard is not None
            else {"ok": True, "condition": None, "reason": None, "folders": []}
        )
        if self.shared.outbox is None and snap["ok"]:
            snap.update(ok=False, condition="outbox_closed", reason="the outbox is not open yet")
        return snap

    def status(self) -> dict[str, Any]:
        sh = self.shared
        gen, outbox = sh.gen, sh.outbox
        out = sh.stats.snapshot()
        storage = self.storage()
        out["degraded"] = not storage["ok"]
        out["reason"] = storage["reason"]
        out["storage"] = storage
        out["queued"] = gen.queue.qsize() if gen else 0
        out["outbox_depth"] = outbox.depth() if outbox else 0
        out["outbox_full"] = bool(outbox and outbox.is_full())
        # delivery: end_to_end: sent to the broker, kept until the fleet's ingester acknowledges them.
        out["outbox_unacked"] = outbox.unacked() if outbox else 0
        out["paused"] = sh.paused.is_set()
        # Which model set and precision each role runs on this device, and why (precision: auto).
        out["model"] = sh.engine.models if sh.engine is not None else None
        if gen is not None and gen.publisher is not None:
            st = gen.publisher.state
            out["broker"] = {"connected": st.connected, "last_error": st.last_error}
        if gen is not None:
            out["sources"] = {n: s.stats() for n, s in gen.sources.items()}
            out["sources"].update(
                {n: {**c.stats(), **gen.analyzers[n].tracker.status()} for n, c in gen.cameras.items()}
            )
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        """/healthz: 200 only when the pipeline runs *and* is not degraded; the body says why not."""
        alive = self.healthy()
        st = self.status()
        ok = alive and not st["degraded"]
        if not alive:
            st["reason"] = st["reason"] or "pipeline unhealthy (stopped or stuck workers)"
        return ok, {"healthy": ok, "alive": alive, "stuck_workers": self.stuck_workers(), **st}

    def health_doc(self) -> dict[str, Any]:
        """The retained MQTT health document (Home Assistant's problem sensor reads `problem`)."""
        storage = self.storage()
        return {
            "problem": not storage["ok"],
            "condition": storage["condition"],
            "reason": storage["reason"],
            "storage": storage["folders"],
        }

    def status_line(self) -> str:
        st = self.status()
        broker = st.get("broker") or {}
        state = "paused" if st["paused"] else ("back pressure" if st["outbox_full"] else "running")
        if st["degraded"]:
            bad = [f for f in st["storage"]["folders"] if not f["ok"]]
            # Only a best-effort place (the history): nothing waits, say so rather than "files wait".
            held = bad and all(f.get("best_effort") for f in bad)
            state = f"degraded: {st['reason']}" if held else f"degraded, new files wait: {st['reason']}"
        conn = (
            "connected" if broker.get("connected") else f"broker: {broker.get('last_error') or 'connecting'}"
        )
        return (
            f"{state}; processed {st['processed']}, failed {st['failed']}, "
            f"outbox {st['outbox_depth']}; {conn if self.shared.cfg.mqtt else 'stdout'}"
        )
