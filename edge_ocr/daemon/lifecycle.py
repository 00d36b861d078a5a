"""The daemon's lifecycle: generations, reload, the stop event, systemd notifications.

A generation is everything built from one configuration (edge_ocr.daemon.state.Generation): the
publisher, the workers, the sources, the cameras and the optional web server. A reload stops the old
generation and starts a new one; the engine and the outbox are kept when their settings did not
change. `run()` (the main thread) owns the watchdog, the STATUS= line, the storage checks and the
periodic stats. Shutdown joins in reverse start order. What each room does is handed in as `Rooms`,
callables the `Daemon` wires: this module imports no sibling room.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_ocr import __version__, logs
from edge_ocr.config import CameraSource as CameraConfig
from edge_ocr.config import Config, load_config
from edge_ocr.daemon.settings import engine_settings, history_places, region_sensors, storage_places
from edge_ocr.daemon.state import RESTARTING, STUCK_AFTER_S, Generation, Shared
from edge_ocr.errors import ConfigError, PublishError, missing_extra
from edge_ocr.history import History, HistoryError
from edge_ocr.notify import watchdog_interval_s
from edge_ocr.outbox import Outbox
from edge_ocr.pipeline import Engine
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.publish.stdout import StdoutPublisher
from edge_ocr.publish.topics import Command
from edge_ocr.storage import StorageGuard
from edge_ocr.web.settings import ApiSettings

log = logging.getLogger("edge_ocr.daemon")  # one name for the package: log filters match it


@dataclass(frozen=True)
class Rooms:
    """What the lifecycle asks of the other rooms, as the Daemon wires them."""

    start_folders: Callable[[Generation], None]
    start_camera: Callable[[Generation, CameraConfig], None]
    on_command: Callable[[Command], dict[str, Any] | None]
    healthy: Callable[[], bool]
    stuck_workers: Callable[[], list[str]]
    health: Callable[[], tuple[bool, dict[str, Any]]]
    status: Callable[[], dict[str, Any]]
    storage: Callable[[], dict[str, Any]]
    health_doc: Callable[[], dict[str, Any]]
    status_line: Callable[[], str]
    recent: Callable[[], dict[str, list[dict[str, Any]]]]
    try_region: Callable[[str, Any], Any]  # the setup page's Test: (camera, RegionConfig) -> Trial


def web_settings(cfg: Config) -> ApiSettings | None:
    """The http section's settings (None: disabled), checked: the exposure rule, the token, and the web
    extra installed (MissingExtraError names it)."""
    if not cfg.http.enabled:
        return None
    settings = ApiSettings.from_config(cfg)
    try:
        import edge_ocr.web.server  # noqa: F401  (FastAPI and uvicorn)
    except ImportError as exc:
        missing = missing_extra("http.enabled", exc, alternative="or set http.enabled: false")
        if missing is None:
            raise
        raise missing from exc
    return settings


class Lifecycle:
    """Starts, reloads and stops generations; runs the main loop until the stop event is set."""

    def __init__(self, shared: Shared, rooms: Rooms) -> None:
        self.shared = shared
        self.rooms = rooms
        self._last_stats = 0.0
        self._storage_problems: frozenset[tuple[str, str]] = frozenset()
        self._history_refused = False  # not a disk condition (a newer file): not retried until a reload

    # ------------------------------------------------------------------ engine, outbox, publisher

    def open(self, cfg: Config) -> None:
        """Engine and outbox: reused across reloads when their settings did not change."""
        sh = self.shared
        key = engine_settings(cfg)
        if sh.engine is None or key != sh.engine_key:
            sh.notifier.status("loading models")
            sh.engine = Engine(key)
            sh.engine_key = key
            log.info("engine: models %s", sh.engine.models)
        box = cfg.outbox
        if sh.outbox is not None and sh.outbox.path != cfg.outbox_path:
            sh.outbox.close()
            sh.outbox = None
        if sh.outbox is None:
            self.open_outbox(cfg)
        else:
            sh.outbox.max_messages, sh.outbox.max_bytes = box.max_messages, box.max_bytes
        if sh.history is not None and (not cfg.history.enabled or sh.history.path != cfg.history_path):
            sh.history.close()
            sh.history = None
        if sh.history is None:
            self.open_history(cfg)
        else:
            sh.history.retain_days = cfg.history.retain_days
            sh.history.max_bytes = int(cfg.history.max_mb * 1024 * 1024)

    def open_history(self, cfg: Config) -> None:
        """Open the history of readings; on a full or read-only state_dir the daemon runs without it
        (readings are still published) and tries again as the storage guard allows."""
        guard = self.shared.guard
        assert guard is not None
        h = cfg.history
        self._history_refused = False
        if not h.enabled:
            return
        try:
            self.shared.history = History(
                cfg.history_path, retain_days=h.retain_days, max_bytes=int(h.max_mb * 1024 * 1024)
            )
        except HistoryError as exc:
            if guard.failed("history", exc) is None:
                self._history_refused = True
                log.error(
                    "history: %s; readings are published but not kept", exc, extra={"reason": "history"}
                )
            return
        guard.worked("history")

    def open_outbox(self, cfg: Config) -> bool:
        """Open the outbox; on a full, read-only or missing state_dir the daemon runs degraded without
        it (nothing is taken) and tries again as the storage guard allows."""
        guard = self.shared.guard
        assert guard is not None
        box = cfg.outbox
        try:
            self.shared.outbox = Outbox(
                cfg.outbox_path, max_messages=box.max_messages, max_bytes=box.max_bytes
            )
        except PublishError as exc:
            if guard.failed("state", exc) is None:
                raise  # not the disk (e.g. an outbox from a newer edge-ocr): the user must act
            return False
        guard.worked("state")
        return True

    def ensure_outbox(self) -> None:
        """Main thread: open an outbox that could not be opened yet, then hand it to the publisher."""
        sh = self.shared
        gen = sh.gen
        if sh.outbox is not None or gen is None or sh.guard is None or not sh.guard.usable(["state"]):
            return
        if not self.open_outbox(gen.cfg):
            return
        log.info("outbox %s opened", gen.cfg.outbox_path)
        if isinstance(gen.publisher, MqttPublisher):
            assert sh.outbox is not None
            gen.publisher.attach(sh.outbox)
        elif gen.publisher is None:
            self.start_publisher(gen)

    def ensure_history(self) -> None:
        """Main thread: open a history that could not be opened yet (a full disk), once it has room."""
        sh, gen = self.shared, self.shared.gen
        if gen is None or sh.guard is None or sh.history is not None or self._history_refused:
            return
        if gen.cfg.history.enabled and sh.guard.usable(["history"]):
            self.open_history(gen.cfg)

    def start_publisher(self, gen: Generation) -> None:
        """MQTT starts even without an outbox (it reports the degraded state); stdout needs one."""
        cfg, outbox = gen.cfg, self.shared.outbox
        if cfg.mqtt is not None:
            gen.publisher = MqttPublisher(
                cfg.mqtt,
                cfg.device_id,
                outbox,
                gen.publisher_stop,
                sources=[s.name for s in cfg.sources],
                on_command=self.rooms.on_command,
                region_sensors=region_sensors(cfg),
            )
            gen.publisher.publish_health(self.rooms.health_doc())
        elif outbox is not None:
            gen.publisher = StdoutPublisher(outbox, gen.publisher_stop)
        else:
            return
        gen.publisher.start()

    # ------------------------------------------------------------------ generations

    def start_generation(self, cfg: Config, http: Any = None) -> None:
        """`http`: the web server of the previous generation, kept across a reload that did not change
        its settings (a Save on the page waits on it for the reload's outcome)."""
        sh = self.shared
        # The exposure rule, the token and the web extra first: a refused http section refuses the
        # start at once, before the models load.
        web = web_settings(cfg)
        # The guard first: its first check decides whether the first files may be taken at all.
        sh.guard = StorageGuard(storage_places(cfg), cfg.storage, best_effort=history_places(cfg))
        sh.guard.check()
        self.open(cfg)
        gen = Generation(cfg, threading.Event())
        if http is not None:
            gen.gate = http.ctx.gate  # one gate: the API's requests and the new cameras share the engine
            # A page polling a camera that is still configured sees its last frame until the camera's
            # new view replaces it (start_camera), never a 404 for the moments in between.
            old = sh.gen.views if sh.gen is not None else {}
            kept = {c.name for c in cfg.sources if isinstance(c, CameraConfig)}
            gen.views.update({name: view for name, view in old.items() if name in kept})
        sh.gen = gen
        self.start_publisher(gen)
        self.rooms.start_folders(gen)
        for cam_cfg in cfg.sources:
            if isinstance(cam_cfg, CameraConfig):
                self.rooms.start_camera(gen, cam_cfg)
        if web is not None and http is not None:
            gen.http = http
        elif web is not None:
            gen.http = self.web_server(gen, web)
            gen.http.start()

    def web_server(self, gen: Generation, settings: ApiSettings) -> Any:
        from edge_ocr.web.context import SetupHooks, WebContext
        from edge_ocr.web.server import WebServer

        sh = self.shared

        # The server may outlive its generation (see reload): it always reads the current one.
        def current_stopped() -> bool:
            g = sh.gen
            return g is None or g.stop.is_set()

        def views() -> dict[str, Any]:
            g = sh.gen
            return dict(g.views) if g is not None else {}

        setup = SetupHooks(
            config_path=lambda: sh.config_path,
            running=lambda: sh.cfg,
            reload=lambda timeout: sh.reloads.wait(sh.reloads.ask(), timeout),
            command=lambda verb, args: self.rooms.on_command(Command(verb, args, b"")),
            try_region=self.rooms.try_region,
        )
        ctx = WebContext(
            settings=settings,
            gate=gen.gate,
            engine=lambda: None if sh.stop.is_set() or current_stopped() else sh.engine,
            health=self.rooms.health,
            status=self.rooms.status,
            cameras=views,
            recent=self.rooms.recent,
            setup=setup,
            history=lambda: sh.history,
        )
        return WebServer(ctx)

    def stop_generation(self, gen: Generation, *, keep_http: bool = False) -> None:
        """Reverse start order: HTTP (unless kept for the next generation), sources, workers (finish the
        file in hand), publisher."""
        if gen.http is not None and not keep_http:
            gen.http.stop()
        for source in gen.sources.values():
            source.stop()
        for camera in gen.cameras.values():
            camera.stop()  # its analysis finishes the frame in hand before the publisher stops
        gen.stop.set()
        for t in gen.workers:
            t.join(STUCK_AFTER_S)
            if t.is_alive():
                log.error("%s did not finish its file within %.0f s", t.name, STUCK_AFTER_S)
        gen.publisher_stop.set()
        if gen.publisher is not None:
            gen.publisher.join(10)
        self.shared.beats.clear()

    def reload(self) -> None:
        sh = self.shared
        serving = sh.reloads.begin()
        if sh.config_path is None:
            log.info("reload: no config file (embedded default); nothing to reload")
            sh.reloads.end(serving, "no configuration file to reload (the daemon runs on its default)")
            return
        try:
            new = load_config(sh.config_path)
            web = web_settings(new)  # a token that cannot be read refuses the reload, not the daemon
        except ConfigError as exc:
            log.error(
                "reload refused, keeping the running configuration: %s", exc, extra={"reason": "config"}
            )
            sh.reloads.end(serving, f"reload refused, the running configuration is kept: {exc}")
            return
        sh.notifier.reloading()
        log.info("reloading configuration from %s", sh.config_path)
        old = sh.gen
        # The web server stays up when its settings and the engine's share are unchanged: the page
        # keeps its connection, and a Save waiting on this reload gets its answer.
        kept = None
        if old is not None and old.http is not None:
            same = web is not None and web == old.http.ctx.settings
            if same and new.engine.workers == old.cfg.engine.workers:
                kept = old.http
            else:
                sh.reloads.end(serving, RESTARTING)  # answered before its server stops (or goes)
        try:
            if old is not None:
                self.stop_generation(old, keep_http=kept is not None)
            sh.cfg = new
            logs.configure(new.logging.format, new.logging.level)
            self.start_generation(new, kept)
        except BaseException as exc:
            sh.reloads.end(serving, f"the reload failed: {exc}")
            raise
        sh.notifier.ready(self.rooms.status_line())
        sh.reloads.end(serving, None)

    # ------------------------------------------------------------------ the main loop

    def run(self) -> int:
        sh = self.shared
        log.info("edge-ocr %s starting; config: %s", __version__, json.dumps(sh.cfg.redacted(), default=str))
        self.start_generation(sh.cfg)
        sh.notifier.ready(self.rooms.status_line())
        log.info("ready")
        ping = watchdog_interval_s()
        tick = min(1.0, ping) if ping else 1.0
        last_status = ""
        try:
            while not sh.stop.wait(tick):
                if sh.reload.is_set():
                    self.reload()
                self.watch_storage()
                healthy = self.rooms.healthy()
                if ping and healthy:
                    sh.notifier.watchdog()
                elif ping:
                    log.error(
                        "pipeline unhealthy (stuck: %s): withholding the watchdog ping",
                        self.rooms.stuck_workers(),
                        extra={"reason": "unhealthy"},
                    )
                line = self.rooms.status_line()
                if line != last_status:
                    sh.notifier.status(line)
                    last_status = line
                self.maybe_publish_stats()
        finally:
            sh.notifier.stopping()
            log.info("stopping: finishing the files in hand")
            if sh.gen is not None:
                self.stop_generation(sh.gen)
            if sh.outbox is not None:
                sh.outbox.close()
            if sh.history is not None:
                sh.history.close()
            log.info("stopped")
        return 0

    def watch_storage(self) -> None:
        """Main thread: check the folders when due, open a late outbox, and report any change."""
        sh = self.shared
        if sh.guard is None:
            return
        if sh.guard.due():
            sh.guard.check()
        self.ensure_outbox()
        self.ensure_history()
        storage = self.rooms.storage()
        # Compared by what is wrong, not by the text: the free space in the reason changes every check.
        problems = frozenset((f["folder"], f["condition"]) for f in storage["folders"] if not f["ok"])
        problems |= {("outbox", "closed")} if sh.outbox is None else frozenset()
        if problems == self._storage_problems:
            return
        better = problems < self._storage_problems
        self._storage_problems = problems
        gen = sh.gen
        if gen is None:
            return
        if isinstance(gen.publisher, MqttPublisher):
            gen.publisher.publish_health(self.rooms.health_doc())
            if sh.cfg.mqtt is not None and sh.cfg.mqtt.stats_interval_s > 0:
                self._last_stats = 0.0  # stats name the change now, not at the next interval
        if better:
            # Files given back while degraded wait in the inbox; find them now, not at the next rescan.
            for source in gen.sources.values():
                source.request_rescan()

    def maybe_publish_stats(self) -> None:
        gen, mqtt = self.shared.gen, self.shared.cfg.mqtt
        if gen is None or gen.publisher is None or mqtt is None or mqtt.stats_interval_s <= 0:
            return  # 0: off (it was "every loop tick": about once a second)
        now = time.monotonic()
        if now - self._last_stats >= mqtt.stats_interval_s:
            self._last_stats = now
            gen.publisher.publish_stats(self.rooms.status())
