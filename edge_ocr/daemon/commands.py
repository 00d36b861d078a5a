"""Commands from MQTT (`cmd/<verb>`): reload, pause, resume, capture, set_value, stats.

They run on the MQTT network thread, so they only flip flags or ask a camera for a frame; the work
happens on the main thread, the workers and the cameras' analysis threads.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

from edge_ocr.daemon.state import Shared
from edge_ocr.publish.topics import Command

log = logging.getLogger("edge_ocr.daemon")  # one name for the package: log filters match it


class Commands:
    """Answers each command with a reply document (None: no reply)."""

    def __init__(self, shared: Shared, status: Callable[[], dict[str, Any]]) -> None:
        self.shared = shared
        self.status = status

    def on_command(self, cmd: Command) -> dict[str, Any] | None:
        """Runs on the MQTT network thread: only flips flags."""
        sh = self.shared
        if cmd.verb == "reload":
            sh.reload.set()
            return {"ok": True, "message": "reload requested"}
        if cmd.verb == "pause":
            sh.paused.set()
            return {"ok": True, "paused": True}
        if cmd.verb == "resume":
            sh.paused.clear()
            if sh.gen is not None:
                for source in sh.gen.sources.values():
                    source.request_rescan()
            return {"ok": True, "paused": False}
        if cmd.verb == "capture":
            return self.capture(cmd.args)
        if cmd.verb == "set_value":
            return self.set_value(cmd.args)
        if cmd.verb == "stats":
            return {"ok": True, **self.status()}
        return {"ok": False, "error": f"unknown command {cmd.verb!r}"}

    def capture(self, args: dict[str, Any]) -> dict[str, Any]:
        """cmd/capture [{"source": name, "reference": bool}]: analyse the next frame of each (or the
        named) camera now; with `reference`, that frame becomes the camera's alignment reference."""
        gen = self.shared.gen
        cameras = gen.cameras if gen is not None else {}
        wanted = args.get("source") if isinstance(args, dict) else None
        chosen = {n: c for n, c in cameras.items() if wanted in (None, n)}
        if not chosen:
            return {"ok": False, "error": f"no camera source {wanted!r}" if wanted else "no camera sources"}
        reference = isinstance(args, dict) and args.get("reference") is True
        if reference and gen is not None:
            missing = [n for n in chosen if gen.analyzers[n].alignment is None]
            if missing:
                return {"ok": False, "error": f"camera {missing[0]!r} has no alignment configured"}
            for n in chosen:
                gen.analyzers[n].request_reference()
        for camera in chosen.values():
            camera.request_capture()
        out: dict[str, Any] = {"ok": True, "sources": {n: c.stats()["state"] for n, c in chosen.items()}}
        if reference:
            out["reference"] = True
        return out

    def set_value(self, args: dict[str, Any]) -> dict[str, Any]:
        """cmd/set_value {"source", "region", "value"}: the remembered value of a numeric region (after a
        meter swap, or to correct it); the next reading is checked against it."""
        gen = self.shared.gen
        if not isinstance(args, dict):
            return {"ok": False, "error": 'payload must be {"source": ..., "region": ..., "value": number}'}
        source, region, value = args.get("source"), args.get("region"), args.get("value")
        analyzer = gen.analyzers.get(source) if gen is not None and isinstance(source, str) else None
        if analyzer is None:
            return {"ok": False, "error": f"no camera source {source!r}"}
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value.replace(",", "."))
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return {"ok": False, "error": f"value must be a number, not {args.get('value')!r}"}
        try:
            before = analyzer.tracker.set_value(str(region), float(value))
        except KeyError as exc:
            return {"ok": False, "error": str(exc.args[0])}
        log.warning(
            "camera %s: %s set to %g by cmd/set_value (was %s)", source, region, value,
            "unknown" if before is None else f"{before:g}",
            extra={"source": source, "region": str(region), "reason": "set_value"},
        )  # fmt: skip
        return {"ok": True, "source": source, "region": region, "value": float(value), "previous": before}
