"""Watching a folder: inotify where the kernel sees the changes, watchdog's polling where it cannot
(network and FUSE mounts, an exhausted inotify watch limit), a watcher restarted when its thread dies.

Watchdog's threads only translate events into (kind, src, dest) tuples for the folder source's owner
thread (`edge_ocr.sources.folder`), which holds all discovery state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from edge_ocr.errors import SourceError

try:
    from watchdog.observers.inotify import InotifyObserver
except ImportError:  # not Linux (a developer's laptop): polling only
    InotifyObserver = None  # type: ignore[assignment,misc]

log = logging.getLogger("edge_ocr.sources.folder")  # as before the split: log filters match it


class _StopRaceFilter(logging.Filter):
    """Drop watchdog's one ERROR for a benign race of its own: an inotify emitter stopped while its
    read returned logs "queue_events() called when the thread is inactive" and returns with no event
    (watchdog PR #963 chose the log line). Seen at every daemon shutdown; nothing is lost."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StopRaceFilter())


logging.getLogger("watchdog.observers.inotify").addFilter(_StopRaceFilter())

# Filesystems whose changes may be made by another kernel, so inotify never hears of them.
_NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb3",
        "smbfs",
        "ncpfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "vboxsf",
        "virtiofs",
        "fuse",
        "sshfs",
    }
)
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]


def fs_type(path: str | Path, mounts: str | None = None) -> str:
    """The type of the filesystem holding `path`, from /proc/self/mounts ('' when unknown)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return ""
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        # The kernel escapes spaces and tabs in mount points as octal (\040).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, parts[2]
    return best_type


def is_network_fs(fstype: str) -> bool:
    """True where inotify is blind to changes. fuseblk (ntfs-3g, exfat on USB) is a local disk."""
    return fstype in _NETWORK_FS or fstype.startswith("fuse.")


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: only translates events and hands them to the owner thread."""

    def __init__(self, put: Callable[[tuple[str, str, str]], None]) -> None:
        self._put = put

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        if event.is_directory:
            # A folder created or moved in may already hold files: the owner scans it.
            if event.event_type == "created" or (event.event_type == "moved" and dest):
                self._put(("dir", dest or src, ""))
        elif event.event_type in ("closed", "moved", "deleted"):
            self._put((event.event_type, src, dest))
        elif event.event_type in ("created", "modified"):
            self._put(("changed", src, ""))


class Watcher:
    """One folder's watchdog observer: started, checked and restarted by the folder source's owner."""

    def __init__(
        self,
        name: str,
        root: str,
        recursive: bool,
        poll_interval_s: float,
        put: Callable[[tuple[str, str, str]], None],
    ) -> None:
        self.name = name
        self._root = root
        self.recursive = recursive
        self.poll_interval_s = poll_interval_s
        self._put = put
        self._observer: BaseObserver | None = None
        self.mode = ""  # 'inotify' or 'polling' once started

    def start(self, use_poll: bool, fstype: str) -> None:
        handler = _Handler(self._put)
        if not use_poll and InotifyObserver is not None:
            observer: BaseObserver | None = None
            try:
                # Full events: a file moved in from outside the folder arrives as a move (complete
                # now) instead of a create (which would wait stable_s).
                observer = InotifyObserver(generate_full_events=True)
                observer.schedule(handler, self._root, recursive=self.recursive, event_filter=_EVENT_FILTER)
                observer.start()
                self._observer, self.mode = observer, "inotify"
                log.info("folder %s: watching %s with inotify", self.name, self._root)
                return
            except OSError as exc:
                # ENOSPC here is fs.inotify.max_user_watches; EMFILE is max_user_instances.
                if observer is not None:
                    with contextlib.suppress(Exception):
                        observer.stop()
                log.warning(
                    "folder %s: inotify unavailable for %s (%s); polling every %.1f s instead",
                    self.name,
                    self._root,
                    exc,
                    self.poll_interval_s,
                )
        observer = PollingObserver(timeout=self.poll_interval_s)
        try:
            observer.schedule(handler, self._root, recursive=self.recursive, event_filter=_EVENT_FILTER)
            observer.start()
        except OSError as exc:
            raise SourceError(
                f"source {self.name!r}: cannot watch {self._root}: {exc}",
                remedy="check that the folder exists and is readable",
            ) from exc
        self._observer, self.mode = observer, "polling"
        log.info(
            "folder %s: polling %s every %.1f s (filesystem %s)",
            self.name,
            self._root,
            self.poll_interval_s,
            fstype or "unknown",
        )

    def stop(self, timeout: float) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout)

    def check(self) -> None:
        """Restart a watcher whose thread died (e.g. the folder was removed and recreated)."""
        observer = self._observer
        if observer is None or (observer.is_alive() and all(e.is_alive() for e in observer.emitters)):
            return
        log.warning("folder %s: watcher stopped; restarting it", self.name)
        self.stop(1.0)
        try:
            os.makedirs(self._root, exist_ok=True)
            self.start(self.mode == "polling", fs_type(self._root))
        except (OSError, SourceError) as exc:
            log.error("folder %s: cannot restart the watcher: %s", self.name, exc)
