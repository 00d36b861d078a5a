"""The Daemon: sources -> OCR workers -> durable outbox -> publisher, under one stop event.

`Daemon` only wires the rooms of this package together; each owns one concern:
- `lifecycle`: generations, reload, the main loop, the stop event, systemd notifications;
- `signals`: SIGTERM and SIGINT stop, SIGHUP reloads;
- `folder`: folder sources and workers, an item from the inbox to the outbox;
- `camera`: camera sources, a frame to region messages;
- `commands`: cmd/<verb> from MQTT;
- `health`: health, status and stats; `intake`: pause, storage and back pressure for the sources.
They share `state.Shared` (passed in explicitly) and import `state` and `settings` only.

Threads and their owners: each source owns its watcher thread; the daemon owns the worker threads,
the publisher and the optional web server (edge_ocr.web: /healthz, /metrics and, with http.api, the
OCR API and the page, on uvicorn in its own thread). Folder workers, cameras and API requests share one
engine through one EngineGate, which hands slots out in turn when both kinds wait. `run()` (the main
thread) owns signals, systemd notifications and the watchdog.

A full disk, a read-only or vanished done/failed/state folder *degrades* the daemon; it never stops
it (see storage.StorageGuard for the rules). While degraded, sources hold new files in the inbox
(back pressure), results already in the outbox keep going to the broker, and a file whose result is
stored but which cannot be moved waits in flight and is moved once its folder works again. /healthz
answers 503 with the reason; status, stats, /metrics, STATUS= and the retained MQTT health (Home
Assistant's problem sensor) say so. The systemd watchdog still gets its pings: a restart would not
free any space, and a unit restarted at every failure ends up given up by systemd.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from edge_ocr import logs
from edge_ocr.config import Config, load_config
from edge_ocr.daemon.camera import CameraWork
from edge_ocr.daemon.commands import Commands
from edge_ocr.daemon.folder import FolderWork
from edge_ocr.daemon.health import Health
from edge_ocr.daemon.intake import Intake
from edge_ocr.daemon.lifecycle import Lifecycle, Rooms
from edge_ocr.daemon.setup import Setup
from edge_ocr.daemon.signals import install_signals
from edge_ocr.daemon.state import Generation, Shared, Stats
from edge_ocr.notify import Notifier
from edge_ocr.outbox import Outbox
from edge_ocr.pipeline import Engine, EngineSettings
from edge_ocr.storage import StorageGuard


class Daemon:
    """Build with a Config; `run()` blocks until stopped (signal, `request_stop()`)."""

    def __init__(self, cfg: Config, config_path: Path | None = None) -> None:
        self.shared = sh = Shared(cfg, config_path)
        self.health_room = Health(sh)
        self.intake = Intake(sh)
        self.folder_work = FolderWork(sh, self.intake.can_accept)
        self.camera_work = CameraWork(sh, self.intake.can_accept)
        self.commands = Commands(sh, self.health_room.status)
        self.setup = Setup(sh)
        self.lifecycle = Lifecycle(
            sh,
            Rooms(
                start_folders=self.folder_work.start,
                start_camera=self.camera_work.start,
                on_command=self.commands.on_command,
                healthy=self.health_room.healthy,
                stuck_workers=self.health_room.stuck_workers,
                health=self.health_room.health,
                status=self.health_room.status,
                storage=self.health_room.storage,
                health_doc=self.health_room.health_doc,
                status_line=self.health_room.status_line,
                recent=self.folder_work.recent,
                try_region=self.setup.try_region,
            ),
        )

    # What tests, benchmarks and the web layer read of a running daemon.
    @property
    def cfg(self) -> Config:
        return self.shared.cfg

    @property
    def config_path(self) -> Path | None:
        return self.shared.config_path

    @property
    def stop(self) -> threading.Event:
        return self.shared.stop

    @property
    def paused(self) -> threading.Event:
        return self.shared.paused

    @property
    def stats(self) -> Stats:
        return self.shared.stats

    @property
    def notifier(self) -> Notifier:
        return self.shared.notifier

    @property
    def gen(self) -> Generation | None:
        return self.shared.gen

    @property
    def outbox(self) -> Outbox | None:
        return self.shared.outbox

    @property
    def guard(self) -> StorageGuard | None:
        return self.shared.guard

    @property
    def engine(self) -> Engine | None:
        return self.shared.engine

    def use_engine(self, engine: Engine, settings: EngineSettings) -> None:
        """Run on an engine built elsewhere (a benchmark compares the same sessions with and without
        the daemon); replaced only if a reload changes its settings."""
        self.shared.engine, self.shared.engine_key = engine, settings

    def run(self) -> int:
        return self.lifecycle.run()

    def request_stop(self) -> None:
        self.shared.stop.set()

    def request_reload(self) -> None:
        self.shared.reload.set()

    def healthy(self) -> bool:
        return self.health_room.healthy()

    def status(self) -> dict[str, Any]:
        return self.health_room.status()

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.health_room.health()


def run_daemon(config_path: Path | None) -> int:
    """`edge-ocr run`: load config, wire signals, run until SIGTERM/SIGINT; SIGHUP reloads."""
    cfg = load_config(config_path)
    logs.configure(cfg.logging.format, cfg.logging.level)
    daemon = Daemon(cfg, config_path)
    install_signals(daemon.request_stop, daemon.request_reload)
    return daemon.run()
