"""`edge-ocr serve`: the engine, the HTTP API and the page alone; no sources, no outbox, no broker."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge_ocr import __version__, logs
from edge_ocr.config import Config, load_config
from edge_ocr.daemon.settings import engine_settings
from edge_ocr.daemon.signals import install_signals
from edge_ocr.notify import Notifier, watchdog_interval_s
from edge_ocr.pipeline import Engine
from edge_ocr.web.fairshare import EngineGate
from edge_ocr.web.settings import ApiSettings

log = logging.getLogger("edge_ocr.daemon")  # one name for the package: log filters match it


class ApiOnly:
    """`edge-ocr serve`: the engine, the API and the page; no sources, no outbox, no broker."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stop = threading.Event()
        self.engine: Engine | None = None
        self.error: str | None = None
        self.started = time.monotonic()

    def status(self) -> dict[str, Any]:
        return {
            "mode": "serve",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": self.engine.models if self.engine is not None else None,
            "sources": {},
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        ok = self.engine is not None and not self.stop.is_set()
        reason = None if ok else (self.error or ("stopping" if self.stop.is_set() else "loading models"))
        return ok, {"healthy": ok, "alive": ok, "degraded": False, "reason": reason, **self.status()}


def run_serve(config_path: Path | None) -> int:
    """`edge-ocr serve`: listen at once (503 while the models load), then answer until SIGTERM/SIGINT."""
    from edge_ocr.web.context import WebContext
    from edge_ocr.web.server import WebServer

    cfg = load_config(config_path, sources_required=False)  # serve watches no folder
    logs.configure(cfg.logging.format, cfg.logging.level)
    settings = dataclasses.replace(ApiSettings.from_config(cfg), api=True)
    svc = ApiOnly(cfg)
    notifier = Notifier()
    ctx = WebContext(
        settings=settings,
        gate=EngineGate(max(1, settings.workers)),
        engine=lambda: None if svc.stop.is_set() else svc.engine,
        health=svc.health,
        status=svc.status,
    )
    server = WebServer(ctx)
    install_signals(svc.stop.set)
    server.start()
    try:
        notifier.status("loading models")
        svc.engine = Engine(engine_settings(cfg))
        log.info("engine: models %s", svc.engine.models)
        notifier.ready("serving the API")
        log.info("ready")
        ping = watchdog_interval_s()
        while not svc.stop.wait(min(1.0, ping) if ping else 1.0):
            if ping:
                notifier.watchdog()
    finally:
        notifier.stopping()
        svc.stop.set()
        server.stop()
        log.info("stopped")
    return 0
