"""Folder work: an item from the inbox to the outbox, then out of the inbox.

The folder sources and the OCR workers of a generation start here. A file's result is committed to
the outbox *before* the file leaves the inbox, so a crash at any point loses nothing: the file is
processed again and its message gets the same id. A file whose result is stored but whose done/failed
folder refuses it (full, read-only) waits in flight and is moved once that folder works again.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_ocr.config import FolderSource as FolderConfig
from edge_ocr.daemon.settings import folder_settings, source_keys
from edge_ocr.daemon.state import Generation, Shared
from edge_ocr.decode import decode
from edge_ocr.errors import EdgeOcrError, PublishError
from edge_ocr.publish.topics import Topics
from edge_ocr.results import message_id, result_message, safe_topic_level
from edge_ocr.sources.folder import FinishError, FolderItem, FolderSource
from edge_ocr.web.fairshare import GatedEngine

log = logging.getLogger("edge_ocr.daemon")  # one name for the package: log filters match it


class FolderWork:
    """The folder sources and the workers that take their items through the engine into the outbox."""

    def __init__(self, shared: Shared, can_accept: Callable[[tuple[str, ...]], bool]) -> None:
        self.shared = shared
        self.can_accept = can_accept

    def start(self, gen: Generation) -> None:
        """The workers, then every folder source: all registered before any starts, since a source hands
        out the files already in its folder at once and a worker looks its source up by name."""
        for i in range(gen.cfg.engine.workers):
            name = f"ocr-worker-{i}"
            self.shared.beats.beat(name, busy=False)
            t = threading.Thread(target=self.worker, args=(gen, name), name=name, daemon=True)
            gen.workers.append(t)
            t.start()
        folders = [s for s in gen.cfg.sources if isinstance(s, FolderConfig)]
        for src in folders:
            gen.sources[src.name] = FolderSource(
                folder_settings(src),
                gen.stop,
                gen.queue,
                can_accept=functools.partial(self.can_accept, source_keys(src)),
            )
        for src in folders:
            source = gen.sources[src.name]
            source.start()
            log.info(
                "source %s: watching %s (%s)", src.name, src.path, source.mode, extra={"source": src.name}
            )

    def recent(self) -> dict[str, list[dict[str, Any]]]:
        """The last results of each folder source, newest first (GET /api/sources)."""
        return {k: list(v)[::-1] for k, v in self.shared.recent.items()}

    def worker(self, gen: Generation, name: str) -> None:
        beat = self.shared.beats.beat
        while not gen.stop.is_set():
            beat(name, busy=False)
            if gen.unfinished:
                beat(name, busy=True)
                self.finish_unfinished(gen)
                beat(name, busy=False)
            try:
                item = gen.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            beat(name, busy=True)
            try:
                self.process(gen, item)
            except Exception:
                # A bug or a disk error must not take the daemon down. The file stays in the inbox and
                # is handed back to its source, which offers it again at the next rescan.
                log.exception(
                    "unexpected error processing %s; it stays in the inbox", item.path,
                    extra={"source": item.source, "file": item.relpath},
                )  # fmt: skip
                source = gen.sources.get(item.source)
                if source is not None:
                    source.release(item.path)
        beat(name, busy=False)

    def process(self, gen: Generation, item: FolderItem) -> None:
        sh = self.shared
        cfg = gen.cfg
        engine, outbox = sh.engine, sh.outbox
        assert engine is not None and outbox is not None
        source = gen.sources[item.source]
        src_cfg = next(s for s in cfg.sources if s.name == item.source and isinstance(s, FolderConfig))
        sha = item.sha256 or ""
        topics = Topics(cfg.mqtt.topic_prefix if cfg.mqtt else "edge-ocr", cfg.device_id)
        topic_ = topics.result(safe_topic_level(item.source))
        ctx = {"source": item.source, "file": item.relpath}

        if sha and src_cfg.duplicates != "process":
            earlier = outbox.lookup(sha)
            if earlier is not None:
                if src_cfg.duplicates == "republish" and not self.store(
                    source, item, earlier.msg_id, earlier.topic, earlier.payload, force=True
                ):
                    return
                log.info(
                    "%s: duplicate of an earlier file (sha256 %s…): %s",
                    item.relpath,
                    sha[:12],
                    "republished" if src_cfg.duplicates == "republish" else "skipped",
                    extra={**ctx, "id": earlier.msg_id, "reason": "duplicate"},
                )
                sh.stats.skip()
                self.complete(gen, item, True, None)
                return

        ok, result, error = True, None, None
        if item.error is not None:
            ok, error = False, dict(item.error)
        else:
            try:
                image = decode(item.data or b"", max_pixels=cfg.engine.max_pixels)
                result = GatedEngine(engine, gen.gate).run(image)
            except EdgeOcrError as exc:
                ok = False
                error = {"type": type(exc).__name__, "message": str(exc)}
            except Exception as exc:  # a bug or onnxruntime failure: report it, keep running
                log.exception("%s: unexpected error", item.relpath, extra=ctx)
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
            model=dict(engine.models),
            result=result,
            error=error,
        )
        payload = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
        qos = cfg.mqtt.qos if cfg.mqtt else 1
        # Committed before the file moves; force: this file's result was already computed and the
        # bound stops *new* files (back pressure) rather than losing this one.
        if not self.store(
            source, item, msg_id, topic_, payload, qos=qos, sha256=sha if ok and sha else None, force=True
        ):
            return
        latency = max(0.0, time.time() - item.mtime) if item.mtime else None
        sh.stats.record(ok, latency)
        sh.recent.setdefault(item.source, deque(maxlen=10)).append({
            "file": item.relpath, "ok": ok, "processed_at": msg["processed_at"],
            "text": (result.text[:500] if result else None), "lines": len(result.lines) if result else 0,
            "error": None if ok else (error or {}).get("message"),
            "ms": round(result.timings_ms.get("total", 0)) if result else None,
        })  # fmt: skip
        self.complete(gen, item, ok, None if ok else error)
        if ok:
            log.info(
                "%s: %d lines in %.0f ms",
                item.relpath,
                len(result.lines) if result else 0,
                result.timings_ms.get("total", 0) if result else 0,
                extra={**ctx, "id": msg_id},
            )
        else:
            message = error.get("message") if error else "?"
            log.warning(
                "%s: failed: %s", item.relpath, message,
                extra={**ctx, "id": msg_id, "reason": (error or {}).get("type")},
            )  # fmt: skip

    def store(self, source: FolderSource, item: FolderItem, msg_id: str, *args: Any, **kwargs: Any) -> bool:
        """Put a result in the outbox; False (the file given back to the inbox) when the disk refuses."""
        outbox, guard = self.shared.outbox, self.shared.guard
        assert outbox is not None and guard is not None
        try:
            outbox.put(msg_id, *args, **kwargs)
        except PublishError as exc:
            if guard.failed("state", exc) is None:
                raise
            # An expected condition, reported once per episode by the guard: no traceback per file.
            log.debug(
                "%s: result not stored (%s); it stays in the inbox", item.relpath, exc,
                extra={"source": item.source, "file": item.relpath, "id": msg_id, "reason": "outbox_refused"},
            )  # fmt: skip
            source.release(item.path)
            return False
        guard.worked("state")
        return True

    def complete(self, gen: Generation, item: FolderItem, ok: bool, error: dict[str, Any] | None) -> None:
        """Move a file whose result is stored; a full or read-only folder keeps it for later."""
        guard = self.shared.guard
        assert guard is not None
        source = gen.sources[item.source]
        ctx = {"source": item.source, "file": item.relpath}
        try:
            source.complete(item.path, ok, error)
        except FinishError as exc:
            key = f"{exc.folder}:{item.source}"
            if guard.failed(key, exc) is None:
                log.error(
                    "%s: %s; it stays in the inbox", item.relpath, exc, extra={**ctx, "reason": "finish"}
                )
                source.release(item.path)
                return
            log.debug("%s: not moved yet (%s)", item.relpath, exc, extra={**ctx, "reason": "storage"})
            with gen.unfinished_lock:
                gen.unfinished.append((item, ok, error, key))
            return
        guard.worked(f"{'done' if ok else 'failed'}:{item.source}")

    def finish_unfinished(self, gen: Generation) -> None:
        """Move the files held back by a folder that works again (each tried once per call)."""
        guard = self.shared.guard
        assert guard is not None
        with gen.unfinished_lock:
            ready = [u for u in gen.unfinished if guard.usable([u[3]])]
            for u in ready:
                gen.unfinished.remove(u)
        for item, ok, error, _ in ready:
            # At a stop the file simply stays in the inbox: processed again at the next start, same id.
            if not gen.stop.is_set():
                self.complete(gen, item, ok, error)
