"""The hall every room of the daemon opens onto: what they share, and nothing they do.

`Shared` holds the configuration in force, the stop, pause and reload events, the engine, the outbox,
the history, the storage guard and the current `Generation`; `Stats` and `Beats` are the counters and
worker heartbeats that health and status read. Rooms receive a `Shared` (never a class attribute) and
import this module and `settings` only, never each other.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from edge_ocr import __version__
from edge_ocr.config import Config
from edge_ocr.history import History
from edge_ocr.notify import Notifier
from edge_ocr.outbox import Outbox
from edge_ocr.pipeline import Engine, EngineSettings
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.publish.stdout import StdoutPublisher
from edge_ocr.regions import RegionAnalyzer
from edge_ocr.sources.camera import CameraSource
from edge_ocr.sources.folder import FolderItem, FolderSource
from edge_ocr.storage import StorageGuard
from edge_ocr.web.fairshare import EngineGate

STUCK_AFTER_S = 120.0  # a worker busy this long on one file is considered stuck (no watchdog pings)


class Stats:
    """Counters and a latency window, updated by workers, read by stats/metrics/health."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.processed = 0
        self.failed = 0
        self.skipped = 0
        self._latency: deque[float] = deque(maxlen=1000)

    def record(self, ok: bool, latency_s: float | None) -> None:
        with self._lock:
            if ok:
                self.processed += 1
            else:
                self.failed += 1
            if latency_s is not None:
                self._latency.append(latency_s)

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lat = sorted(self._latency)
        p50 = statistics.median(lat) if lat else None
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
        return {
            "processed": self.processed,
            "failed": self.failed,
            "skipped": self.skipped,
            "latency_p50_s": round(p50, 3) if p50 is not None else None,
            "latency_p95_s": round(p95, 3) if p95 is not None else None,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "version": __version__,
        }


class Beats:
    """Each worker's last heartbeat and since when it is busy on one file (stuck-worker detection)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._busy_since: dict[str, float | None] = {}

    def beat(self, name: str, busy: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self._beats[name] = now
            self._busy_since[name] = now if busy else None

    def stuck(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [
                n
                for n, since in self._busy_since.items()
                if since is not None and now - since > STUCK_AFTER_S
            ]

    def clear(self) -> None:
        with self._lock:
            self._beats.clear()
            self._busy_since.clear()


class Generation:
    """Everything built from one configuration; replaced as a whole on reload."""

    def __init__(self, cfg: Config, stop: threading.Event) -> None:
        self.cfg = cfg
        self.stop = stop  # set on daemon stop *or* on reload
        # The publisher stops last, after the workers committed their final results, so those go out
        # before the retained `offline`.
        self.publisher_stop = threading.Event()
        self.queue: queue.Queue[FolderItem] = queue.Queue(maxsize=max(2, 2 * cfg.engine.workers))
        self.sources: dict[str, FolderSource] = {}
        self.cameras: dict[str, CameraSource] = {}  # camera sources (issue 4), apart from the folders
        self.analyzers: dict[str, RegionAnalyzer] = {}  # camera name -> its regions (for commands, status)
        self.workers: list[threading.Thread] = []
        self.publisher: MqttPublisher | StdoutPublisher | None = None
        self.http: Any = None  # edge_ocr.web.server.WebServer, imported only when http is enabled
        # The engine's share: folder workers and cameras take slots as "work", API requests as "api".
        self.gate = EngineGate(cfg.engine.workers)
        self.views: dict[str, Any] = {}  # camera name -> edge_ocr.web.watch.CameraView
        # Files whose result is stored but which could not be moved (a full or read-only folder): they
        # stay in flight and a worker moves them once the folder works again. (item, ok, error, guard key)
        self.unfinished: deque[tuple[FolderItem, bool, dict[str, Any] | None, str]] = deque()
        self.unfinished_lock = threading.Lock()


class Shared:
    """The daemon's state, passed explicitly to every room. The main thread replaces `gen`, `engine`,
    `outbox`, `history` and `guard`; the other threads only read them."""

    def __init__(self, cfg: Config, config_path: Path | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.reload = threading.Event()
        self.reloads = Reloads(self.reload)
        self.stats = Stats()
        self.beats = Beats()
        self.notifier = Notifier()
        self.engine: Engine | None = None
        self.engine_key: EngineSettings | None = None
        self.outbox: Outbox | None = None
        self.history: History | None = None  # None: off, or not opened yet (a full disk)
        self.guard: StorageGuard | None = None
        self.gen: Generation | None = None
        # The last results of each folder source, for the web page (GET /api/sources).
        self.recent: dict[str, deque[dict[str, Any]]] = {}


RESTARTING = "restarting"  # a reload's outcome: the HTTP server is replaced (its settings changed)


class Reloads:
    """Reload requests that wait for their outcome (the page's Save waits for the daemon to run the new
    configuration). Each `ask()` gets a number; a reload serves every request made before it began, so
    a reload already under way with the old file never answers a request made after it started."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event  # also set by SIGHUP and cmd/reload, which wait for nothing
        self._cond = threading.Condition()
        self._asked = 0
        self._served = 0
        # (requests served up to, outcome) of recent reloads: a waiter reads the first that served it
        self._outcomes: deque[tuple[int, str | None]] = deque(maxlen=64)

    def ask(self) -> int:
        with self._cond:
            self._asked += 1
            self._event.set()
            return self._asked

    def begin(self) -> int:
        """The main thread starts a reload: the requests it serves."""
        with self._cond:
            self._event.clear()
            return self._asked

    def end(self, served: int, outcome: str | None) -> None:
        """None: the new configuration runs; `RESTARTING`; or why the reload was refused."""
        with self._cond:
            self._served = max(self._served, served)
            self._outcomes.append((served, outcome))
            self._cond.notify_all()

    def wait(self, number: int, timeout: float) -> str | None:
        """The outcome of request `number`; raises TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._served >= number, timeout):
                raise TimeoutError(f"the daemon did not reload within {timeout:g} s")
            return next((outcome for served, outcome in self._outcomes if served >= number), None)
