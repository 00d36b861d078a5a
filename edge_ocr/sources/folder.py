"""The hot-folder source: hands each complete file in a watched folder to the daemon exactly once.

What this module owns:

* **Completeness.** A file is taken on close-after-write (inotify ``IN_CLOSE_WRITE``) or when it is
  renamed/moved into the folder. Writers that never close cleanly (network copies, a process that keeps
  its fd open) are taken once size, mtime and ctime have not changed for ``stable_s``. Closed and
  moved-in files still wait ``settle_s`` (short) without changes, because copiers set mode and times
  right after closing. Zero-byte files always wait ``stable_s``: "create empty, then write" writers
  exist. Writers that close between chunks should write ``NAME.part`` and rename (``*.part`` is ignored).
* **Discovery.** Files present at start are taken; a periodic rescan (``rescan_s``) catches missed
  events; a watchdog ``PollingObserver`` replaces inotify when asked, when the folder is on a network or
  FUSE mount (detected from ``/proc/self/mounts``) or when inotify cannot start (e.g. the watch limit).
* **Exactly once, never dropped.** Paths handed out stay *in flight* until :meth:`FolderSource.complete`;
  while the consumer is full, files stay in the inbox and are handed out when it has room again.
* **Lifecycle.** :meth:`FolderSource.complete` moves a file to ``done_dir`` (or deletes it) or to
  ``failed_dir`` with ``NAME.error.json`` beside it. When the move fails (a full disk, a read-only or
  unmounted folder) the file stays in the inbox *and in flight*, and :class:`FinishError` says which
  folder failed: the caller tries `complete` again later, or gives the file back with `release`. A
  missing ``done_dir``/``failed_dir`` is never created here (only sub-folders below it): on an
  unmounted stick that would write to the bare mount point. Names are kept; a clash gets a counter suffix
  (``photo.1.jpg``), nothing is ever overwritten. In recursive mode the subfolder structure below the
  inbox is kept below ``done_dir``/``failed_dir``, so same-named files from different folders stay apart.

One owner thread holds all discovery state; watchdog's threads only enqueue events to it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_ocr.errors import ConfigError, SourceError
from edge_ocr.sources.files import FinishError, FolderItem, error_doc, move, read_item
from edge_ocr.sources.observer import Watcher, fs_type, is_network_fs

log = logging.getLogger(__name__)

DEFAULT_INCLUDE: tuple[str, ...] = ("*.jpg", "*.jpeg", "*.png", "*.bmp", "*.tif", "*.tiff", "*.webp")
_IGNORED_SUFFIXES = (".part", ".tmp")
# Bounds memory for a huge inbox; paths beyond it stay on disk and come back through a rescan.
_MAX_TRACKED = 20_000

_Sig = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


@dataclass(frozen=True)
class FolderSettings:
    """Everything one hot folder needs; config.py builds this from a `sources:` entry."""

    name: str
    path: Path
    failed_dir: Path
    done_dir: Path | None = None
    on_success: Literal["move", "delete"] = "move"
    poll: Literal["auto"] | bool = "auto"
    poll_interval_s: float = 2.0
    stable_s: float = 5.0
    settle_s: float = 0.5
    rescan_s: float = 60.0
    recursive: bool = False
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = ()
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        def fail(key: str, why: str) -> ConfigError:
            return ConfigError(f"source {self.name!r}: {key}: {why}")

        for key in ("path", "failed_dir", "done_dir"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, Path(value).expanduser().absolute())
        # Patterns are matched case-insensitively: cameras write IMG_0001.JPG.
        object.__setattr__(self, "include", tuple(p.lower() for p in self.include))
        object.__setattr__(self, "exclude", tuple(p.lower() for p in self.exclude))
        if self.on_success not in ("move", "delete"):
            raise fail("on_success", f"must be 'move' or 'delete', not {self.on_success!r}")
        if self.on_success == "move" and self.done_dir is None:
            raise fail("done_dir", "required when on_success is 'move'")
        if self.on_success == "delete" and self.done_dir is not None:
            raise fail("done_dir", "must not be set when on_success is 'delete'")
        if self.poll not in ("auto", True, False):
            raise fail("poll", f"must be 'auto', true or false, not {self.poll!r}")
        for key in ("poll_interval_s", "stable_s", "rescan_s", "max_bytes"):
            if not getattr(self, key) > 0:
                raise fail(key, "must be greater than 0")
        if not 0 <= self.settle_s <= self.stable_s:
            raise fail("settle_s", "must be between 0 and stable_s")
        if not self.include:
            raise fail("include", "must list at least one pattern")
        for key in ("failed_dir", "done_dir"):
            if getattr(self, key) == self.path:
                raise fail(key, "must differ from path")


@dataclass
class _Pending:
    sig: _Sig
    since: float  # monotonic time of the last change seen
    quiet: float  # how long it must stay unchanged: settle_s once closed, else stable_s


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# --------------------------------------------------------------------- selection


def dir_wanted(path: str, root: str, skip_dirs: tuple[str, ...]) -> bool:
    """Is `path` a folder whose files a source takes? (below the inbox, not hidden, not done/failed)"""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return True
    if rel.startswith(".."):
        return False
    if any(p.startswith((".", "~")) for p in rel.split(os.sep)):
        return False
    return not any(path == d or path.startswith(d + os.sep) for d in skip_dirs)


def wanted(path: str, root: str, skip_dirs: tuple[str, ...], s: FolderSettings) -> bool:
    """Is `path` a file this source takes? (location, ignored names, include/exclude)."""
    rel = os.path.relpath(path, root)
    if rel.startswith("..") or rel == ".":
        return False
    parts = rel.split(os.sep)
    if len(parts) > 1 and not s.recursive:
        return False
    name = parts[-1].lower()
    if name.endswith(_IGNORED_SUFFIXES) or not dir_wanted(os.path.dirname(path), root, skip_dirs):
        return False
    if name.startswith((".", "~")):
        return False
    relp = "/".join(parts).lower()

    def matches(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(relp if "/" in p else name, p) for p in patterns)

    return matches(s.include) and not matches(s.exclude)


class FolderSource:
    """Watches one folder and hands complete files to `output`, each once, until stopped.

    `output` is a bounded `queue.Queue` (full means "hold files") or a callable taking a FolderItem;
    either may be paired with `can_accept()` saying whether the consumer has room. The source stops when
    the daemon's `stop` event is set or when :meth:`stop` is called (which leaves `stop` alone, so one
    source can be restarted on reload without stopping the daemon).
    """

    def __init__(
        self,
        settings: FolderSettings,
        stop: threading.Event,
        output: queue.Queue[FolderItem] | Callable[[FolderItem], None],
        can_accept: Callable[[], bool] | None = None,
    ) -> None:
        if isinstance(output, queue.Queue) and output.maxsize <= 0:
            raise ValueError("output queue must be bounded (maxsize > 0) for back pressure")
        self.settings = settings
        self._stop = stop
        self._halt = threading.Event()
        self._output = output
        self._can_accept = can_accept
        self._events: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self._root = os.path.realpath(settings.path)
        self._skip_dirs: tuple[str, ...] = ()
        self._trust_ctime = True
        self._pending: dict[str, _Pending] = {}
        self._ready: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) when found complete
        self._lock = threading.Lock()  # guards _in_flight and counters touched by complete()
        self._in_flight: dict[str, tuple[int, int, int]] = {}  # path -> (inode, size, mtime_ns)
        self._counts = {"handed_out": 0, "done": 0, "failed": 0}
        self._held = False
        self._overflow = False
        self._rescan_due = True
        self._watcher: Watcher | None = None
        self._thread: threading.Thread | None = None
        self.mode = ""  # 'inotify' or 'polling' once started
        self.heartbeat = time.monotonic()  # last owner-loop pass; the daemon's watchdog reads it

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create the folders, start watching, then start the owner thread (initial scan included)."""
        if self._thread is not None:
            raise RuntimeError("FolderSource already started")
        s = self.settings
        for d in (s.path, s.done_dir, s.failed_dir):
            if d is None:
                continue
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if d != s.path:
                    # A done/failed folder on a full, read-only or missing disk holds files back (the
                    # daemon's storage guard reports it); it must not stop the source from starting.
                    log.warning("folder %s: cannot create %s: %s", s.name, d, exc.strerror or exc)
                    continue
                raise SourceError(
                    f"source {s.name!r}: cannot create {d}: {exc}",
                    remedy="create the folder or give the edge-ocr user write access to it",
                ) from exc
        self._root = os.path.realpath(s.path)
        inner = [os.path.realpath(d) for d in (s.done_dir, s.failed_dir) if d is not None]
        self._skip_dirs = tuple(d for d in inner if d.startswith(self._root + os.sep))
        fstype = fs_type(self._root)
        self._trust_ctime = not is_network_fs(fstype)
        use_poll = (not self._trust_ctime) if s.poll == "auto" else bool(s.poll)
        self._watcher = Watcher(s.name, self._root, s.recursive, s.poll_interval_s, self._events.put)
        self._watcher.start(use_poll, fstype)
        self.mode = self._watcher.mode
        self._thread = threading.Thread(target=self._run, name=f"folder-{s.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and join the owner thread. Items already handed out remain in flight."""
        self._halt.set()
        self._events.put(("wake", "", ""))
        if self._watcher is not None:
            self._watcher.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("folder %s: owner thread did not stop within %.1f s", self.settings.name, timeout)

    def request_rescan(self) -> None:
        """Ask for a rescan soon (e.g. after `resume`); safe from any thread."""
        self._events.put(("rescan", "", ""))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts, in_flight=len(self._in_flight))
        return dict(
            counts, mode=self.mode, pending=len(self._pending), ready=len(self._ready), holding=self._held
        )

    # ----------------------------------------------------------------- completion

    def release(self, path: str | Path) -> None:
        """Give back a handed-out file untouched (its processing failed unexpectedly, e.g. the outbox
        could not store the result): it stays in the inbox and the next rescan offers it again."""
        with self._lock:
            self._in_flight.pop(os.path.abspath(path), None)

    def complete(self, path: str | Path, ok: bool, reason: dict[str, Any] | None = None) -> Path | None:
        """Finish a handed-out file: to done_dir (or deleted) when ok, else to failed_dir + error.json.

        Returns where the file went (None when deleted or left in place). A file that changed since
        it was handed out (same name, new content) is left in the inbox and offered again. Raises
        FinishError when the file cannot be moved: it stays in the inbox and in flight, to be completed
        again later or given back with `release`.
        """
        src = os.path.abspath(path)
        s = self.settings
        with self._lock:
            ident = self._in_flight.get(src)
        try:
            st = os.stat(src)
        except FileNotFoundError:
            log.warning("folder %s: %s vanished before it could be completed", s.name, src)
            self.release(src)
            return None
        except OSError:
            st = None  # the move below reports it
        if st is not None and ident is not None and ident != (st.st_ino, st.st_size, st.st_mtime_ns):
            log.warning("folder %s: %s changed while processed; offering it again", s.name, src)
            self._events.put(("changed", src, ""))
            self.release(src)
            return None
        rel_dir = os.path.dirname(os.path.relpath(src, self._root))
        if rel_dir.startswith(".."):  # not below the inbox: keep just the name
            rel_dir = ""
        try:
            if ok and s.on_success == "delete":
                os.unlink(src)
                dest = None
            elif ok:
                assert s.done_dir is not None
                dest = move(src, s.done_dir, rel_dir, None)
            else:
                dest = move(src, s.failed_dir, rel_dir, error_doc(s.name, src, reason))
        except OSError as exc:
            where = s.failed_dir if not ok else (s.done_dir or s.path)
            raise FinishError(
                f"source {s.name!r}: cannot finish {src}: {exc.strerror or exc}",
                folder="done" if ok else "failed",
                remedy=f"check free space and write access to {where}",
            ) from exc
        with self._lock:
            self._counts["done" if ok else "failed"] += 1
            self._in_flight.pop(src, None)
        log.debug("folder %s: %s -> %s", s.name, src, dest or "deleted")
        return dest

    # ----------------------------------------------------------------- watching

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._halt.is_set()

    def _run(self) -> None:
        s = self.settings
        quiet_times = [q for q in (s.settle_s / 2, s.stable_s / 4) if q > 0]
        tick = min(1.0, max(0.05, min(quiet_times)))
        next_rescan = next_check = 0.0
        while not self._stopping():
            self.heartbeat = now = time.monotonic()
            # Sleep until an event arrives; wake at least every second to notice an external stop,
            # every tick while files await stability or consumer room.
            wait = next_rescan - now
            if self._pending:
                wait = min(wait, next_check - now)
            if self._ready:  # held back: ask the consumer again soon
                wait = min(wait, tick)
            try:
                msg: tuple[str, str, str] | None = self._events.get(timeout=max(0.0, min(wait, 1.0)))
            except queue.Empty:
                msg = None
            try:
                while msg is not None and not self._stopping():
                    self._handle(*msg)
                    msg = self._events.get_nowait() if not self._events.empty() else None
                if self._stopping():
                    break
                now = time.monotonic()
                if self._overflow and len(self._pending) + len(self._ready) < _MAX_TRACKED // 2:
                    self._overflow, self._rescan_due = False, True
                if self._rescan_due or now >= next_rescan:
                    self._rescan_due = False
                    next_rescan = now + s.rescan_s
                    if self._watcher is not None:
                        self._watcher.check()
                        self.mode = self._watcher.mode
                    self._scan(self._root)
                now = time.monotonic()
                if self._pending and now >= next_check:
                    # Stat pending files once per tick, not once per event batch of a burst.
                    next_check = now + tick
                    self._check_pending(now)
                self._dispatch()
            except Exception:
                # No single bad file or filesystem hiccup may take the watcher down.
                log.exception("folder %s: unexpected error; continuing", s.name)
        log.info("folder %s: stopped", s.name)

    def _handle(self, kind: str, src: str, dest: str) -> None:
        if kind == "closed":
            self._observe(src, complete=True)
        elif kind == "moved":  # either side may be "" when it lies outside the watched folder
            if src:
                self._forget(src)
            if dest:
                self._observe(dest, complete=True)
        elif kind == "changed":
            self._observe(src, complete=False)
        elif kind == "deleted":
            self._forget(src)
        elif kind == "dir":
            if self.settings.recursive and self._dir_wanted(src):
                self._scan(src)
        elif kind == "rescan":
            self._rescan_due = True

    def _forget(self, path: str) -> None:
        self._pending.pop(path, None)
        self._ready.pop(path, None)

    # ----------------------------------------------------------------- selection

    def _dir_wanted(self, path: str) -> bool:
        return dir_wanted(path, self._root, self._skip_dirs)

    def _wanted(self, path: str) -> bool:
        return wanted(path, self._root, self._skip_dirs, self.settings)

    def _aged(self, st: os.stat_result, quiet: float) -> bool:
        # ctime cannot be set by writers (unlike mtime, which copies preserve), so on a local disk an
        # old ctime proves the file has been quiet that long. Network mounts report the server's
        # clock, which may be skewed: there only our own observation counts.
        return self._trust_ctime and time.time() - max(st.st_mtime, st.st_ctime) >= quiet

    def _observe(self, path: str, complete: bool, st: os.stat_result | None = None) -> None:
        """Record a candidate: ready now (closed, moved in, or long quiet) or pending stability."""
        if not self._wanted(path):
            return
        with self._lock:
            if path in self._in_flight:
                return
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                self._forget(path)
                return
        if not stat.S_ISREG(st.st_mode):
            return
        if path in self._ready:
            # An event after the file was found complete: only a real change sends it back to waiting.
            if self._ready[path] == (st.st_size, st.st_mtime_ns) and not complete:
                return
        elif path not in self._pending and len(self._pending) + len(self._ready) >= _MAX_TRACKED:
            self._overflow = True
            return
        sig = _sig(st)
        cur = self._pending.get(path)
        if complete and st.st_size > 0:
            # Closed or moved in. Still wait settle_s: copiers set mode and times right after close
            # (cp -p, shutil.copy), and would fail if the file were already gone.
            quiet = self.settings.settle_s
        elif cur is not None and cur.sig[:2] == sig[:2]:
            quiet = cur.quiet  # only metadata changed: a closed file stays closed
        else:
            quiet = self.settings.stable_s
        if quiet == 0 or self._aged(st, quiet):
            self._pending.pop(path, None)
            self._ready[path] = (st.st_size, st.st_mtime_ns)
            return
        self._ready.pop(path, None)
        if cur is None or cur.sig != sig or cur.quiet != quiet:
            self._pending[path] = _Pending(sig, time.monotonic(), quiet)

    def _check_pending(self, now: float) -> None:
        for path, cand in list(self._pending.items()):
            try:
                st = os.stat(path)
            except OSError:
                del self._pending[path]
                continue
            sig = _sig(st)
            if sig != cand.sig:
                if sig[:2] != cand.sig[:2]:  # content changed without an event (polling, network)
                    cand.quiet = self.settings.stable_s
                cand.sig, cand.since = sig, now
            elif now - cand.since >= cand.quiet or self._aged(st, cand.quiet):
                del self._pending[path]
                self._ready[path] = (st.st_size, st.st_mtime_ns)

    def _scan(self, top: str) -> None:
        """Walk `top` and record every wanted file not yet known, oldest first."""
        found: list[tuple[int, str, os.stat_result]] = []
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except OSError as exc:
                log.warning("folder %s: cannot list %s: %s", self.settings.name, d, exc)
                continue
            with it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if self.settings.recursive and self._dir_wanted(entry.path):
                                stack.append(entry.path)
                        elif entry.path not in self._ready and self._wanted(entry.path):
                            st = entry.stat()
                            found.append((st.st_mtime_ns, entry.path, st))
                    except OSError:
                        continue  # vanished while listing
        with self._lock:
            busy = set(self._in_flight)
        for _, path, st in sorted(found):
            if path not in busy:
                self._observe(path, complete=False, st=st)

    # ----------------------------------------------------------------- handing out

    def _has_room(self) -> bool:
        # A queue's own bound and the consumer's can_accept() (pause, a full outbox) both hold files.
        if isinstance(self._output, queue.Queue) and self._output.full():
            return False
        if self._can_accept is None:
            return True
        try:
            return bool(self._can_accept())
        except Exception:
            log.exception("folder %s: can_accept() failed; holding files", self.settings.name)
            return False

    def _dispatch(self) -> None:
        name = self.settings.name
        while self._ready and not self._stopping():
            if not self._has_room():
                if not self._held:
                    self._held = True
                    log.info(
                        "folder %s: consumer full; holding %d ready files in the inbox",
                        name,
                        len(self._ready),
                    )
                return
            if self._held:
                self._held = False
                log.info("folder %s: consumer has room again; resuming", name)
            path = next(iter(self._ready))
            del self._ready[path]
            with self._lock:
                if path in self._in_flight:
                    continue
            item, ident = read_item(name, self._root, path, self.settings.max_bytes)
            if item is None or ident is None:
                continue
            with self._lock:
                self._in_flight[path] = ident
                self._counts["handed_out"] += 1
            try:
                if isinstance(self._output, queue.Queue):
                    self._output.put_nowait(item)
                else:
                    self._output(item)
            except queue.Full:  # another producer filled it since _has_room()
                with self._lock:
                    self._in_flight.pop(path, None)
                    self._counts["handed_out"] -= 1
                self._ready[path] = (ident[1], ident[2])
            except Exception:
                # Left in the inbox: the next rescan offers it again.
                log.exception("folder %s: consumer rejected %s", name, path)
                with self._lock:
                    self._in_flight.pop(path, None)
            else:
                log.debug("folder %s: handed out %s (%d bytes)", name, path, item.size)
