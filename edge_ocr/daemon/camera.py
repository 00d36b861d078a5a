"""Camera work: a camera source with its regions, and each analysed frame to region messages.

Every camera gets its own analysis thread (in `sources.camera`); a frame becomes at most one message
per region whose value changed, each also stored as the region's retained state. A full outbox holds
frames back (`can_accept`), never values already read. What went into the outbox is then kept in the
history (best effort: a history that cannot be written never holds a reading back).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from edge_ocr.config import CameraSource as CameraConfig
from edge_ocr.daemon.state import Generation, Shared
from edge_ocr.errors import ConfigError, PublishError
from edge_ocr.evidence import EvidenceStore
from edge_ocr.history import HistoryError
from edge_ocr.outbox import Outbox
from edge_ocr.plausibility import MeterMemory
from edge_ocr.publish.topics import Topics
from edge_ocr.regions import RegionAnalyzer, RegionTracker, regions_from_config
from edge_ocr.results import safe_topic_level
from edge_ocr.sources.camera import CameraSource, CapturedFrame, settings_from_config
from edge_ocr.trainingset import TrainingFolder
from edge_ocr.web.fairshare import GatedEngine

log = logging.getLogger("edge_ocr.daemon")  # one name for the package: log filters match it


class CameraWork:
    """Starts a generation's cameras and turns their frames into outbox messages."""

    def __init__(self, shared: Shared, can_accept: Callable[[], bool]) -> None:
        self.shared = shared
        self.can_accept = can_accept

    def start(self, gen: Generation, src: CameraConfig) -> None:
        """A camera with its own analysis thread: frames -> regions -> one message per published value."""
        engine = self.shared.engine
        assert engine is not None
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
            GatedEngine(engine, gen.gate),
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
            src.name, gen.cfg.device_id, tracker, model=engine.models_for("general"),
            region_models={r.name: engine.models_for(r.reader()) for r in src.regions},
            evidence=evidence,
            alignment=al,
            reference_path=(al.reference or state_dir / "reference" / f"{src.name}.png") if al else None,
        )  # fmt: skip
        gen.analyzers[src.name] = analyzer
        try:
            password = src.read_password()
        except ConfigError as exc:
            log.error(
                "camera %s: %s; connecting without a password", src.name, exc, extra={"source": src.name}
            )
            password = None
        # `self.frame` is looked up per frame: a benchmark may wrap it on the instance.
        camera = CameraSource(
            settings_from_config(src, password),
            gen.stop,
            lambda frame: self.frame(gen, src.name, analyzer, frame),
            can_accept=self.can_accept,
        )
        gen.cameras[src.name] = camera
        if gen.cfg.http.enabled:
            from edge_ocr.web.watch import CameraView

            gen.views[src.name] = CameraView(src.name, tracker.regions)
        camera.start()

    def frame(self, gen: Generation, name: str, analyzer: RegionAnalyzer, frame: CapturedFrame) -> None:
        """On the camera's analysis thread. A full outbox holds frames back (can_accept), never values."""
        outbox = self.shared.outbox
        assert outbox is not None
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
        stored: list[dict[str, Any]] = []
        try:
            self._publish(outbox, topics, topic_, name, messages, qos, stored)
        finally:
            self.keep(name, frame.captured_at, stored)

    def _publish(self, outbox: Outbox, topics: Topics, topic_: str, name: str,
                 messages: list[dict[str, Any]], qos: int, stored: list[dict[str, Any]]) -> None:  # fmt: skip
        """Each message into the outbox (and its retained state copy); `stored` collects what went in."""
        for msg in messages:
            payload = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
            # Also the region's retained state (Home Assistant's sensor reads it; a consumer that starts
            # later gets the latest value at once). Its own id: the outbox keeps one row per message.
            state = topics.region_state(safe_topic_level(name), safe_topic_level(msg["region"]))
            try:
                outbox.put(msg["id"], topic_, payload, qos=qos, force=True)
                outbox.put(f"{msg['id']}-state", state, payload, qos=qos, retain=True, force=True)
            except PublishError as exc:
                guard = self.shared.guard
                if guard is None or guard.failed("state", exc) is None:
                    raise
                return  # reported by the guard; frames are held until the state folder works again
            stored.append(msg)
            ctx = {"source": name, "region": msg["region"], "id": msg["id"]}
            if msg["valid"]:
                log.info("camera %s: %s = %r", name, msg["region"], msg.get("value", msg["text"]), extra=ctx)
            else:
                log.warning(
                    "camera %s: %s read %r: not valid (%s: %s)",
                    name, msg["region"], msg["text"], msg["reason"], msg.get("detail"),
                    extra={**ctx, "reason": msg["reason"]},
                )  # fmt: skip

    def keep(self, name: str, captured_at: float, stored: list[dict[str, Any]]) -> None:
        """A frame's published messages into the history: one transaction, skipped while the guard
        holds the history back (a full disk), never raising into the camera's thread."""
        history, guard = self.shared.history, self.shared.guard
        if history is None or not stored or (guard is not None and not guard.usable(("history",))):
            return
        try:
            history.add(name, captured_at, stored)
        except HistoryError as exc:
            if guard is None or guard.failed("history", exc) is None:
                log.error("camera %s: %s", name, exc, extra={"source": name, "reason": "history"})
            return
        if guard is not None:
            guard.worked("history")
