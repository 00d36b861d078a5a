"""The daemon: sources -> OCR workers -> durable outbox -> publisher, under one stop event.

Threads and their owners: each source owns its watcher thread; the daemon owns the worker threads,
the publisher and the optional web server (edge_ocr.web: /healthz, /metrics and, with http.api, the
OCR API and the page, on uvicorn in its own thread). Folder workers, cameras and API requests share one
engine through one EngineGate, which hands slots out in turn when both kinds wait. `run()` (the main
thread) owns signals, systemd notifications and the watchdog. A file's result is committed to the
outbox *before* the file leaves the inbox, so a crash at any point loses nothing: the file is
processed again and its message gets the same id. Shutdown joins in reverse start order.

A full disk, a read-only or vanished done/failed/state folder *degrades* the daemon; it never stops
it (see storage.StorageGuard for the rules). While degraded, sources hold new files in the inbox
(back pressure), results already in the outbox keep going to the broker, and a file whose result is
stored but which cannot be moved waits in flight and is moved once its folder works again. /healthz
answers 503 with the reason; status, stats, /metrics, STATUS= and the retained MQTT health (Home
Assistant's problem sensor) say so. The systemd watchdog still gets its pings: a restart would not
free any space, and a unit restarted at every failure ends up given up by systemd.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import queue
import signal
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from edge_ocr import __version__
from edge_ocr.config import CameraSource as CameraConfig
from edge_ocr.config import Config, load_config
from edge_ocr.config import FolderSource as FolderConfig
from edge_ocr.decode import decode
from edge_ocr.errors import ConfigError, EdgeOcrError, PublishError
from edge_ocr.evidence import EvidenceStore
from edge_ocr.notify import Notifier, watchdog_interval_s
from edge_ocr.outbox import Outbox
from edge_ocr.pipeline import Engine, EngineSettings
from edge_ocr.plausibility import MeterMemory
from edge_ocr.publish.homeassistant import RegionSensor
from edge_ocr.publish.mqtt import MqttPublisher
from edge_ocr.publish.stdout import StdoutPublisher
from edge_ocr.publish.topics import Command, Topics
from edge_ocr.regions import RegionAnalyzer, RegionTracker, regions_from_config
from edge_ocr.results import message_id, result_message, safe_topic_level
from edge_ocr.sources.camera import CameraSource, CapturedFrame, settings_from_config
from edge_ocr.sources.folder import FinishError, FolderItem, FolderSettings, FolderSource
from edge_ocr.storage import StorageGuard
from edge_ocr.trainingset import TrainingFolder
from edge_ocr.web.fairshare import EngineGate, GatedEngine
from edge_ocr.web.settings import ApiSettings

log = logging.getLogger(__name__)

STUCK_AFTER_S = 120.0  # a worker busy this long on one file is considered stuck (no watchdog pings)


def engine_settings(cfg: Config) -> EngineSettings:
    e = cfg.engine
    kwargs: dict[str, Any] = {
        "threads": e.threads,
        "use_cls": e.use_cls,
        "precision": e.precision,
        "model_set": e.model_set,
        # The service's home may be read-only (ProtectHome=): optimized graphs live with its state.
        "graph_cache": cfg.state_dir / "graphs",
    }
    if e.models_dir is not None:
        kwargs["models_dir"] = e.models_dir
    kwargs["general"], kwargs["meter"] = readers_needed(cfg)
    return EngineSettings(**kwargs)


def readers_needed(cfg: Config) -> tuple[bool, bool]:
    """(general, meter): which models this config reads with. Folders, text regions and the API need
    the general models; a device that only reads meters loads the meter model alone (about 100 MB less)."""
    readers = {r.reader() for src in cfg.sources if isinstance(src, CameraConfig) for r in src.regions}
    cameras_whole = any(isinstance(src, CameraConfig) and not src.regions for src in cfg.sources)
    others = any(not isinstance(src, CameraConfig) for src in cfg.sources)
    general = others or cameras_whole or "general" in readers or bool(cfg.http.enabled and cfg.http.api)
    return general or not readers, "meter" in readers


def folder_settings(src: Any) -> FolderSettings:
    return FolderSettings(
        name=src.name,
        path=src.path,
        done_dir=src.done_dir,
        failed_dir=src.failed_dir,
        on_success=src.on_success,
        poll=src.poll,
        poll_interval_s=src.poll_interval_s,
        stable_s=src.stable_s,
        settle_s=min(src.settle_s, src.stable_s),
        rescan_s=src.rescan_s,
        recursive=src.recursive,
        include=tuple(src.include),
        exclude=tuple(src.exclude),
        max_bytes=int(src.max_file_mb * 1024 * 1024),
    )


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


class _Generation:
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
        # stay in flight and a worker moves them once the folder works again. (item, ok, guard key)
        self.unfinished: deque[tuple[FolderItem, bool, dict[str, Any] | None, str]] = deque()
        self.unfinished_lock = threading.Lock()


def region_sensors(cfg: Config) -> list[RegionSensor]:
    """The Home Assistant sensor of every camera region whose `homeassistant.enabled` holds."""
    out = []
    for src in cfg.sources:
        if not isinstance(src, CameraConfig):
            continue
        for r in src.regions:
            ha, num = r.homeassistant, r.numeric
            if not ha.enabled:
                continue
            state_class = ha.state_class
            if state_class is None and num is not None:
                state_class = "total_increasing" if num.monotonic == "increasing" else "measurement"
            out.append(
                RegionSensor(
                    source=safe_topic_level(src.name), region=safe_topic_level(r.name),
                    numeric=num is not None, unit=num.unit if num else None, device_class=ha.device_class,
                    state_class=state_class, name=ha.name, icon=ha.icon,
                    precision=num.decimals if num else None,
                )  # fmt: skip
            )
    return out


def storage_places(cfg: Config) -> list[tuple[str, str, Path]]:
    """The folders the daemon writes to, as the storage guard names them."""
    places: list[tuple[str, str, Path]] = [("state", "state_dir", cfg.state_dir)]
    for src in cfg.sources:
        if isinstance(src, FolderConfig):
            if src.on_success == "move" and src.done_dir is not None:
                places.append((f"done:{src.name}", f"done_dir of {src.name}", src.done_dir))
            if src.failed_dir is not None:
                places.append((f"failed:{src.name}", f"failed_dir of {src.name}", src.failed_dir))
    return places


def _source_keys(src: FolderConfig) -> tuple[str, ...]:
    return ("state", f"done:{src.name}", f"failed:{src.name}")


class Daemon:
    """Build with a Config; `run()` blocks until stopped (signal, `request_stop()`)."""

    def __init__(self, cfg: Config, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.stop = threading.Event()
        self.stats = Stats()
        self.notifier = Notifier()
        self.paused = threading.Event()
        self._reload = threading.Event()
        self._capture = threading.Event()
        self._beats: dict[str, float] = {}
        self._busy_since: dict[str, float | None] = {}
        self._beats_lock = threading.Lock()
        self._last_stats = 0.0
        self._backpressure_logged = False
        self.engine: Engine | None = None
        self._engine_key: EngineSettings | None = None
        self.outbox: Outbox | None = None
        self.guard: StorageGuard | None = None
        self._storage_problems: frozenset[tuple[str, str]] = frozenset()
        self.gen: _Generation | None = None
        # The last results of each folder source, for the web page (GET /api/sources).
        self.recent: dict[str, deque[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ building blocks

    def _open(self, cfg: Config) -> None:
        """Engine and outbox: reused across reloads when their settings did not change."""
        key = engine_settings(cfg)
        if self.engine is None or key != self._engine_key:
            self.notifier.status("loading models")
            self.engine = Engine(key)
            self._engine_key = key
            log.info("engine: models %s", self.engine.models)
        box = cfg.outbox
        if self.outbox is not None and self.outbox.path != cfg.outbox_path:
            self.outbox.close()
            self.outbox = None
        if self.outbox is None:
            self._open_outbox(cfg)
        else:
            self.outbox.max_messages, self.outbox.max_bytes = box.max_messages, box.max_bytes

    def _open_outbox(self, cfg: Config) -> bool:
        """Open the outbox; on a full, read-only or missing state_dir the daemon runs degraded without
        it (nothing is taken) and tries again as the storage guard allows."""
        assert self.guard is not None
        box = cfg.outbox
        try:
            self.outbox = Outbox(cfg.outbox_path, max_messages=box.max_messages, max_bytes=box.max_bytes)
        except PublishError as exc:
            if self.guard.failed("state", exc) is None:
                raise  # not the disk (e.g. an outbox from a newer edge-ocr): the user must act
            return False
        self.guard.worked("state")
        return True

    def _ensure_outbox(self) -> None:
        """Main thread: open an outbox that could not be opened yet, then hand it to the publisher."""
        gen = self.gen
        if self.outbox is not None or gen is None or self.guard is None or not self.guard.usable(["state"]):
            return
        if not self._open_outbox(gen.cfg):
            return
        log.info("outbox %s opened", gen.cfg.outbox_path)
        if isinstance(gen.publisher, MqttPublisher):
            assert self.outbox is not None
            gen.publisher.attach(self.outbox)
        elif gen.publisher is None:
            self._start_publisher(gen)

    def _start_publisher(self, gen: _Generation) -> None:
        """MQTT starts even without an outbox (it reports the degraded state); stdout needs one."""
        cfg = gen.cfg
        if cfg.mqtt is not None:
            gen.publisher = MqttPublisher(
                cfg.mqtt,
                cfg.device_id,
                self.outbox,
                gen.publisher_stop,
                sources=[s.name for s in cfg.sources],
                on_command=self._on_command,
                region_sensors=region_sensors(cfg),
            )
            gen.publisher.publish_health(self._health_doc())
        elif self.outbox is not None:
            gen.publisher = StdoutPublisher(self.outbox, gen.publisher_stop)
        else:
            return
        gen.publisher.start()

    def _start_generation(self, cfg: Config) -> None:
        # The exposure rule and the token first: a refused http section refuses the start, at once.
        web = ApiSettings.from_config(cfg) if cfg.http.enabled else None
        # The guard first: its first check decides whether the first files may be taken at all.
        self.guard = StorageGuard(storage_places(cfg), cfg.storage)
        self.guard.check()
        self._open(cfg)
        gen = _Generation(cfg, threading.Event())
        self.gen = gen
        self._start_publisher(gen)
        for i in range(cfg.engine.workers):
            name = f"ocr-worker-{i}"
            with self._beats_lock:
                self._beats[name] = time.monotonic()
                self._busy_since[name] = None
            t = threading.Thread(target=self._worker, args=(gen, name), name=name, daemon=True)
            gen.workers.append(t)
            t.start()
        # Every source is registered before any starts: a source hands out the files already in its
        # folder at once, and a worker looks its source up by name.
        folders = [s for s in cfg.sources if isinstance(s, FolderConfig)]
        for src in folders:
            gen.sources[src.name] = FolderSource(
                folder_settings(src),
                gen.stop,
                gen.queue,
                can_accept=functools.partial(self._can_accept, _source_keys(src)),
            )
        for src in folders:
            source = gen.sources[src.name]
            source.start()
            log.info("source %s: watching %s (%s)", src.name, src.path, source.mode)
        for cam_cfg in cfg.sources:
            if isinstance(cam_cfg, CameraConfig):
                self._start_camera(gen, cam_cfg)
        if web is not None:
            gen.http = self._web_server(gen, web)
            gen.http.start()

    def _web_server(self, gen: _Generation, settings: ApiSettings) -> Any:
        try:
            from edge_ocr.web.context import WebContext
            from edge_ocr.web.server import WebServer
        except ImportError as exc:
            raise ConfigError(
                f"http.enabled needs the web extra ({exc.name} is missing)",
                remedy="pip install 'edge-ocr[web]', or set http.enabled: false",
            ) from exc
        ctx = WebContext(
            settings=settings,
            gate=gen.gate,
            engine=lambda: None if self.stop.is_set() or gen.stop.is_set() else self.engine,
            health=self.health,
            status=self.status,
            cameras=lambda: dict(gen.views),
            recent=lambda: {k: list(v)[::-1] for k, v in self.recent.items()},
        )
        return WebServer(ctx)

    def _stop_generation(self, gen: _Generation) -> None:
        """Reverse start order: HTTP, sources, workers (finish the file in hand), publisher."""
        if gen.http is not None:
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
        with self._beats_lock:
            self._beats.clear()
            self._busy_since.clear()

    # ------------------------------------------------------------------ flow control

    def _can_accept(self, keys: tuple[str, ...] = ("state",)) -> bool:
        """May a source hand out new work writing to these folders? (pause, storage, a full outbox)"""
        if self.paused.is_set() or self.outbox is None:
            return False
        if self.guard is not None and not self.guard.usable(keys):
            return False
        full = self.outbox.is_full()
        if full and not self._backpressure_logged:
            log.warning(
                "outbox full (%d messages): not taking new files until the broker takes some",
                self.outbox.depth() if self.outbox else -1,
            )
            self.notifier.status("back pressure: outbox full, waiting for the broker")
        elif not full and self._backpressure_logged:
            log.info("outbox has room again: taking new files")
        self._backpressure_logged = full
        return not full

    def _on_command(self, cmd: Command) -> dict[str, Any] | None:
        """Runs on the MQTT network thread: only flips flags."""
        if cmd.verb == "reload":
            self._reload.set()
            return {"ok": True, "message": "reload requested"}
        if cmd.verb == "pause":
            self.paused.set()
            return {"ok": True, "paused": True}
        if cmd.verb == "resume":
            self.paused.clear()
            if self.gen is not None:
                for source in self.gen.sources.values():
                    source.request_rescan()
            return {"ok": True, "paused": False}
        if cmd.verb == "capture":
            return self._capture_command(cmd.args)
        if cmd.verb == "set_value":
            return self._set_value_command(cmd.args)
        if cmd.verb == "stats":
            return {"ok": True, **self.status()}
        return {"ok": False, "error": f"unknown command {cmd.verb!r}"}

    # ------------------------------------------------------------------ the work

    def _beat(self, name: str, busy: bool) -> None:
        now = time.monotonic()
        with self._beats_lock:
            self._beats[name] = now
            self._busy_since[name] = now if busy else None

    def _worker(self, gen: _Generation, name: str) -> None:
        while not gen.stop.is_set():
            self._beat(name, busy=False)
            if gen.unfinished:
                self._beat(name, busy=True)
                self._finish_unfinished(gen)
                self._beat(name, busy=False)
            try:
                item = gen.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._beat(name, busy=True)
            try:
                self._process(gen, item)
            except Exception:
                # A bug or a disk error must not take the daemon down. The file stays in the inbox and
                # is handed back to its source, which offers it again at the next rescan.
                log.exception("unexpected error processing %s; it stays in the inbox", item.path)
                source = gen.sources.get(item.source)
                if source is not None:
                    source.release(item.path)
        self._beat(name, busy=False)

    def _process(self, gen: _Generation, item: FolderItem) -> None:
        cfg = gen.cfg
        assert self.engine is not None and self.outbox is not None
        source = gen.sources[item.source]
        src_cfg = next(s for s in cfg.sources if s.name == item.source and isinstance(s, FolderConfig))
        sha = item.sha256 or ""
        topics = Topics(cfg.mqtt.topic_prefix if cfg.mqtt else "edge-ocr", cfg.device_id)
        topic_ = topics.result(safe_topic_level(item.source))

        if sha and src_cfg.duplicates != "process":
            earlier = self.outbox.lookup(sha)
            if earlier is not None:
                if src_cfg.duplicates == "republish" and not self._store(
                    source, item, earlier.msg_id, earlier.topic, earlier.payload, force=True
                ):
                    return
                log.info(
                    "%s: duplicate of an earlier file (sha256 %s…): %s",
                    item.relpath,
                    sha[:12],
                    "republished" if src_cfg.duplicates == "republish" else "skipped",
                )
                with self.stats._lock:
                    self.stats.skipped += 1
                self._complete(gen, item, True, None)
                return

        ok, result, error = True, None, None
        if item.error is not None:
            ok, error = False, dict(item.error)
        else:
            try:
                image = decode(item.data or b"", max_pixels=cfg.engine.max_pixels)
                result = GatedEngine(self.engine, gen.gate).run(image)
            except EdgeOcrError as exc:
                ok = False
                error = {"type": type(exc).__name__, "message": str(exc)}
            except Exception as exc:  # a bug or onnxruntime failure: report it, keep running
                log.exception("%s: unexpected error", item.relpath)
                ok = False
                error = {"type": type(exc).__name__, "message": f"internal error: {exc}"}
        msg_id = message_id(cfg.device_id, item.source, item.relpath, sha)
        msg = result_message(
            msg_id=msg_id,
            device_id=cfg.device_id,
            source=item.source,
            file=item.relpath,
            sha256=sha or None,
            captured_at=item.mtime,
            model=dict(self.engine.models),
            result=result,
            error=error,
        )
        payload = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
        qos = cfg.mqtt.qos if cfg.mqtt else 1
        # Committed before the file moves; force: this file's result was already computed and the
        # bound stops *new* files (back pressure) rather than losing this one.
        if not self._store(
            source, item, msg_id, topic_, payload, qos=qos, sha256=sha if ok and sha else None, force=True
        ):
            return
        latency = max(0.0, time.time() - item.mtime) if item.mtime else None
        self.stats.record(ok, latency)
        self.recent.setdefault(item.source, deque(maxlen=10)).append({
            "file": item.relpath, "ok": ok, "processed_at": msg["processed_at"],
            "text": (result.text[:500] if result else None), "lines": len(result.lines) if result else 0,
            "error": None if ok else (error or {}).get("message"),
            "ms": round(result.timings_ms.get("total", 0)) if result else None,
        })  # fmt: skip
        self._complete(gen, item, ok, None if ok else error)
        if ok:
            log.info(
                "%s: %d lines in %.0f ms",
                item.relpath,
                len(result.lines) if result else 0,
                result.timings_ms.get("total", 0) if result else 0,
            )
        else:
            log.warning("%s: failed: %s", item.relpath, error.get("message") if error else "?")

    def _store(self, source: FolderSource, item: FolderItem, msg_id: str, *args: Any, **kwargs: Any) -> bool:
        """Put a result in the outbox; False (the file given back to the inbox) when the disk refuses."""
        assert self.outbox is not None and self.guard is not None
        try:
            self.outbox.put(msg_id, *args, **kwargs)
        except PublishError as exc:
            if self.guard.failed("state", exc) is None:
                raise
            # An expected condition, reported once per episode by the guard: no traceback per file.
            log.debug("%s: result not stored (%s); it stays in the inbox", item.relpath, exc)
            source.release(item.path)
            return False
        self.guard.worked("state")
        return True

    def _complete(self, gen: _Generation, item: FolderItem, ok: bool, error: dict[str, Any] | None) -> None:
        """Move a file whose result is stored; a full or read-only folder keeps it for later."""
        assert self.guard is not None
        source = gen.sources[item.source]
        try:
            source.complete(item.path, ok, error)
        except FinishError as exc:
            key = f"{exc.folder}:{item.source}"
            if self.guard.failed(key, exc) is None:
                log.error("%s: %s; it stays in the inbox", item.relpath, exc)
                source.release(item.path)
                return
            log.debug("%s: not moved yet (%s)", item.relpath, exc)
            with gen.unfinished_lock:
                gen.unfinished.append((item, ok, error, key))
            return
        self.guard.worked(f"{'done' if ok else 'failed'}:{item.source}")

    def _finish_unfinished(self, gen: _Generation) -> None:
        """Move the files held back by a folder that works again (each tried once per call)."""
        assert self.guard is not None
        with gen.unfinished_lock:
            ready = [u for u in gen.unfinished if self.guard.usable([u[3]])]
            for u in ready:
                gen.unfinished.remove(u)
        for item, ok, error, _ in ready:
            # At a stop the file simply stays in the inbox: processed again at the next start, same id.
            if not gen.stop.is_set():
                self._complete(gen, item, ok, error)

    # ------------------------------------------------------------------ cameras (issue 4)

    def _start_camera(self, gen: _Generation, src: CameraConfig) -> None:
        """A camera with its own analysis thread: frames -> regions -> one message per published value."""
        assert self.engine is not None
        state_dir = gen.cfg.state_dir
        numeric = any(r.numeric is not None for r in src.regions)
        # The remembered meter values live beside the outbox: they must survive restarts and reboots.
        memory = MeterMemory(state_dir / "meters" / f"{src.name}.json") if numeric else None
        tr = src.training
        training = None
        if numeric and tr.enabled:
            # Crops of the meter regions for `edge-ocr train meter --from`, beside the meter memory.
            training = TrainingFolder(
                state_dir / "training" / src.name, tr.max_files, int(tr.max_mb * 1024 * 1024)
            )
        tracker = RegionTracker(
            GatedEngine(self.engine, gen.gate),
            regions_from_config(src.regions),
            change_threshold=src.change_threshold,
            debounce_frames=src.debounce_frames,
            memory=memory,
            training=training,
        )
        evidence = None
        ev = src.evidence
        if ev is not None and ev.dir is not None:
            evidence = EvidenceStore(
                ev.dir, src.name, max_files=ev.max_files, max_bytes=int(ev.max_mb * 1024 * 1024)
            )
        al = src.alignment
        analyzer = RegionAnalyzer(
            src.name, gen.cfg.device_id, tracker, model=self.engine.models_for("general"),
            region_models={r.name: self.engine.models_for(r.reader()) for r in src.regions},
            evidence=evidence,
            alignment=al,
            reference_path=(al.reference or state_dir / "reference" / f"{src.name}.png") if al else None,
        )  # fmt: skip
        gen.analyzers[src.name] = analyzer
        try:
            password = src.read_password()
        except ConfigError as exc:
            log.error("camera %s: %s; connecting without a password", src.name, exc)
            password = None
        camera = CameraSource(
            settings_from_config(src, password),
            gen.stop,
            lambda frame: self._camera_frame(gen, src.name, analyzer, frame),
            can_accept=self._can_accept,
        )
        gen.cameras[src.name] = camera
        if gen.cfg.http.enabled:
            from edge_ocr.web.watch import CameraView

            gen.views[src.name] = CameraView(src.name, tracker.regions)
        camera.start()

    def _camera_frame(
        self, gen: _Generation, name: str, analyzer: RegionAnalyzer, frame: CapturedFrame
    ) -> None:
        """On the camera's analysis thread. A full outbox holds frames back (can_accept), never values."""
        assert self.outbox is not None
        cfg = gen.cfg
        topics = Topics(cfg.mqtt.topic_prefix if cfg.mqtt else "edge-ocr", cfg.device_id)
        topic_ = topics.result(safe_topic_level(name))
        messages = analyzer.messages(frame.image, frame.captured_at, force=frame.forced)
        view = gen.views.get(name)
        if view is not None:
            view.update(
                frame.image, frame.captured_at, analyzer.tracker.last_readings(), messages,
                analyzer.tracker.alignment,
            )  # fmt: skip
        qos = cfg.mqtt.qos if cfg.mqtt else 1
        for msg in messages:
            payload = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
            # Also the region's retained state (Home Assistant's sensor reads it; a consumer that starts
            # later gets the latest value at once). Its own id: the outbox keeps one row per message.
            state = topics.region_state(safe_topic_level(name), safe_topic_level(msg["region"]))
            try:
                self.outbox.put(msg["id"], topic_, payload, qos=qos, force=True)
                self.outbox.put(f"{msg['id']}-state", state, payload, qos=qos, retain=True, force=True)
            except PublishError as exc:
                if self.guard is None or self.guard.failed("state", exc) is None:
                    raise
                return  # reported by the guard; frames are held until the state folder works again
            if msg["valid"]:
                log.info("camera %s: %s = %r", name, msg["region"], msg.get("value", msg["text"]))
            else:
                log.warning(
                    "camera %s: %s read %r: not valid (%s: %s)",
                    name, msg["region"], msg["text"], msg["reason"], msg.get("detail"),
                )  # fmt: skip

    def _capture_command(self, args: dict[str, Any]) -> dict[str, Any]:
        """cmd/capture [{"source": name, "reference": bool}]: analyse the next frame of each (or the
        named) camera now; with `reference`, that frame becomes the camera's alignment reference."""
        gen = self.gen
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

    def _set_value_command(self, args: dict[str, Any]) -> dict[str, Any]:
        """cmd/set_value {"source", "region", "value"}: the remembered value of a numeric region (after a
        meter swap, or to correct it); the next reading is checked against it."""
        gen = self.gen
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
        )  # fmt: skip
        return {"ok": True, "source": source, "region": region, "value": float(value), "previous": before}

    @staticmethod
    def _camera_healthy(camera: CameraSource) -> bool:
        """Threads alive, supervisor beating, analysis not stuck; a disconnected camera is not unhealthy."""
        now = time.monotonic()
        busy = camera.analysis_busy_since
        return camera.alive() and now - camera.heartbeat < 60 and (busy is None or now - busy < STUCK_AFTER_S)

    # ------------------------------------------------------------------ health, stats, metrics

    def _stuck_workers(self) -> list[str]:
        now = time.monotonic()
        with self._beats_lock:
            return [
                n
                for n, since in self._busy_since.items()
                if since is not None and now - since > STUCK_AFTER_S
            ]

    def healthy(self) -> bool:
        gen = self.gen
        if gen is None or self.stop.is_set():
            return False
        if any(not t.is_alive() for t in gen.workers) or self._stuck_workers():
            return False
        now = time.monotonic()
        if not all(self._camera_healthy(c) for c in gen.cameras.values()):
            return False
        return all(now - s.heartbeat < max(60.0, 3 * s.settings.rescan_s) for s in gen.sources.values())

    def storage(self) -> dict[str, Any]:
        """The storage guard's view, plus whether the outbox is open."""
        snap: dict[str, Any] = (
            self.guard.snapshot()
            if self.guard is not None
            else {"ok": True, "condition": None, "reason": None, "folders": []}
        )
        if self.outbox is None and snap["ok"]:
            snap.update(ok=False, condition="outbox_closed", reason="the outbox is not open yet")
        return snap

    def status(self) -> dict[str, Any]:
        gen = self.gen
        out = self.stats.snapshot()
        storage = self.storage()
        out["degraded"] = not storage["ok"]
        out["reason"] = storage["reason"]
        out["storage"] = storage
        out["queued"] = gen.queue.qsize() if gen else 0
        out["outbox_depth"] = self.outbox.depth() if self.outbox else 0
        out["outbox_full"] = bool(self.outbox and self.outbox.is_full())
        out["paused"] = self.paused.is_set()
        # Which model set and precision each role runs on this device, and why (precision: auto).
        out["model"] = self.engine.models if self.engine is not None else None
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
        return ok, {"healthy": ok, "alive": alive, "stuck_workers": self._stuck_workers(), **st}

    def _health_doc(self) -> dict[str, Any]:
        """The retained MQTT health document (Home Assistant's problem sensor reads `problem`)."""
        storage = self.storage()
        return {
            "problem": not storage["ok"],
            "condition": storage["condition"],
            "reason": storage["reason"],
            "storage": storage["folders"],
        }

    def _status_line(self) -> str:
        st = self.status()
        broker = st.get("broker") or {}
        state = "paused" if st["paused"] else ("back pressure" if st["outbox_full"] else "running")
        if st["degraded"]:
            state = f"degraded, new files wait: {st['reason']}"
        conn = (
            "connected" if broker.get("connected") else f"broker: {broker.get('last_error') or 'connecting'}"
        )
        return (
            f"{state}; processed {st['processed']}, failed {st['failed']}, "
            f"outbox {st['outbox_depth']}; {conn if self.cfg.mqtt else 'stdout'}"
        )

    # ------------------------------------------------------------------ main loop

    def request_stop(self) -> None:
        self.stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def _do_reload(self) -> None:
        self._reload.clear()
        if self.config_path is None:
            log.info("reload: no config file (embedded default); nothing to reload")
            return
        try:
            new = load_config(self.config_path)
            if new.http.enabled:
                ApiSettings.from_config(new)  # a token that cannot be read refuses the reload, not the daemon
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self.notifier.reloading()
        log.info("reloading configuration from %s", self.config_path)
        old = self.gen
        if old is not None:
            self._stop_generation(old)
        self.cfg = new
        self._start_generation(new)
        self.notifier.ready(self._status_line())

    def run(self) -> int:
        log.info(
            "edge-ocr %s starting; config: %s", __version__, json.dumps(self.cfg.redacted(), default=str)
        )
        self._start_generation(self.cfg)
        self.notifier.ready(self._status_line())
        log.info("ready")
        ping = watchdog_interval_s()
        tick = min(1.0, ping) if ping else 1.0
        last_status = ""
        try:
            while not self.stop.wait(tick):
                if self._reload.is_set():
                    self._do_reload()
                self._watch_storage()
                healthy = self.healthy()
                if ping and healthy:
                    self.notifier.watchdog()
                elif ping:
                    log.error(
                        "pipeline unhealthy (stuck: %s): withholding the watchdog ping", self._stuck_workers()
                    )
                line = self._status_line()
                if line != last_status:
                    self.notifier.status(line)
                    last_status = line
                self._maybe_publish_stats()
        finally:
            self.notifier.stopping()
            log.info("stopping: finishing the files in hand")
            if self.gen is not None:
                self._stop_generation(self.gen)
            if self.outbox is not None:
                self.outbox.close()
            log.info("stopped")
        return 0

    def _watch_storage(self) -> None:
        """Main thread: check the folders when due, open a late outbox, and report any change."""
        if self.guard is None:
            return
        if self.guard.due():
            self.guard.check()
        self._ensure_outbox()
        storage = self.storage()
        # Compared by what is wrong, not by the text: the free space in the reason changes every check.
        problems = frozenset((f["folder"], f["condition"]) for f in storage["folders"] if not f["ok"])
        problems |= {("outbox", "closed")} if self.outbox is None else frozenset()
        if problems == self._storage_problems:
            return
        better = problems < self._storage_problems
        self._storage_problems = problems
        gen = self.gen
        if gen is None:
            return
        if isinstance(gen.publisher, MqttPublisher):
            gen.publisher.publish_health(self._health_doc())
            if self.cfg.mqtt is not None and self.cfg.mqtt.stats_interval_s > 0:
                self._last_stats = 0.0  # stats name the change now, not at the next interval
        if better:
            # Files given back while degraded wait in the inbox; find them now, not at the next rescan.
            for source in gen.sources.values():
                source.request_rescan()

    def _maybe_publish_stats(self) -> None:
        gen = self.gen
        mqtt = self.cfg.mqtt
        if gen is None or gen.publisher is None or mqtt is None or mqtt.stats_interval_s <= 0:
            return  # 0: off (it was "every loop tick": about once a second)
        now = time.monotonic()
        if now - self._last_stats >= mqtt.stats_interval_s:
            self._last_stats = now
            gen.publisher.publish_stats(self.status())


def run_daemon(config_path: Path | None) -> int:
    """`edge-ocr run`: load config, wire signals, run until SIGTERM/SIGINT; SIGHUP reloads."""
    cfg = load_config(config_path)
    logging.getLogger().setLevel(cfg.logging.level)
    daemon = Daemon(cfg, config_path)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()


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
    import dataclasses

    from edge_ocr.web.context import WebContext
    from edge_ocr.web.server import WebServer

    cfg = load_config(config_path)
    logging.getLogger().setLevel(cfg.logging.level)
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
    signal.signal(signal.SIGTERM, lambda *_: svc.stop.set())
    signal.signal(signal.SIGINT, lambda *_: svc.stop.set())
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
