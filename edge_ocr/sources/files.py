"""A handed-out file's bytes and its end: reading it once (hashing as it goes, oversize and unreadable
files become error items), and moving it to done/failed under a free name, NAME.error.json first.

A missing done/failed folder is never created here (only sub-folders below it): on an unmounted stick
that would write to the bare mount point. Names are kept; a clash gets a counter suffix
(``photo.1.jpg``); nothing is ever overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from edge_ocr.errors import SourceError

_CHUNK = 1 << 20
# Several sources (and worker threads) may share a done/failed dir: choosing a free name and
# renaming into it must not interleave, or two files could pick the same name.
_MOVE_LOCK = threading.Lock()


class FinishError(SourceError):
    """A handed-out file could not be moved to done_dir/failed_dir (or deleted); it stays in flight."""

    def __init__(self, message: str, *, folder: Literal["done", "failed"], remedy: str) -> None:
        super().__init__(message, remedy=remedy)
        self.folder = folder


@dataclass(frozen=True)
class FolderItem:
    """One complete file, read once: its bytes and their sha256, or why it could not be read."""

    source: str
    path: Path
    relpath: str  # below the inbox, '/'-separated
    size: int
    mtime: float
    sha256: str | None
    data: bytes | None = field(repr=False)
    # Set instead of data when the file is not read: {"type": "oversize"|"unreadable", "message": ...}.
    error: dict[str, Any] | None = None


def read_item(
    name: str, root: str, path: str, max_bytes: int
) -> tuple[FolderItem | None, tuple[int, int, int] | None]:
    """Read the file once, hashing as we go; oversize or unreadable files become error items."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")

    def failed(st: os.stat_result, kind: str, message: str) -> tuple[FolderItem, tuple[int, int, int]]:
        err = {"type": kind, "message": message, "size": st.st_size}
        item = FolderItem(name, Path(path), rel, st.st_size, st.st_mtime, None, None, err)
        return item, (st.st_ino, st.st_size, st.st_mtime_ns)

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; fstat needs the open fd
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        try:
            st = os.stat(path)
        except OSError:
            return None, None
        return failed(st, "unreadable", f"cannot open: {exc.strerror or exc}")
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None, None
        if st.st_size > max_bytes:
            return failed(st, "oversize", f"{st.st_size} bytes exceeds max_bytes {max_bytes}")
        digest = hashlib.sha256()
        buf = bytearray()
        try:
            while chunk := f.read(min(_CHUNK, max_bytes + 1 - len(buf))):
                digest.update(chunk)
                buf += chunk
                if len(buf) > max_bytes:
                    return failed(
                        os.fstat(f.fileno()),
                        "oversize",
                        f"grew beyond max_bytes {max_bytes} while read",
                    )
        except OSError as exc:
            return failed(st, "unreadable", f"read failed: {exc.strerror or exc}")
        st = os.fstat(f.fileno())
    item = FolderItem(name, Path(path), rel, len(buf), st.st_mtime, digest.hexdigest(), bytes(buf))
    return item, (st.st_ino, st.st_size, st.st_mtime_ns)


def error_doc(name: str, src: str, reason: dict[str, Any] | None) -> dict[str, Any]:
    """The NAME.error.json written beside a failed file."""
    reason = dict(reason or {})
    return {
        "source": name,
        "original_path": src,
        "error_type": reason.get("error_type") or reason.get("type") or "unknown",
        "reason": reason,
        "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _free_name(dest_dir: Path, name: str, with_error_json: bool) -> Path:
    """`name`, or `stem.N.ext` for the smallest N free (with room for NAME.error.json when asked)."""
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a name like ".x"
        stem, dot, ext = name, "", ""
    n = 0
    while True:
        cand = dest_dir / (name if n == 0 else f"{stem}.{n}{dot}{ext}")
        side = cand.with_name(cand.name + ".error.json")
        if not os.path.lexists(cand) and not (with_error_json and os.path.lexists(side)):
            return cand
        n += 1


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems (e.g. SMB) refuse fsync on a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(target: Path, doc: dict[str, Any]) -> None:
    # Hidden .tmp name: ignored by the watcher even when failed_dir lies inside the inbox.
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk must not keep a torn half of it
            os.unlink(tmp)
        raise


def move(src: str, root: Path, rel_dir: str, error_doc: dict[str, Any] | None) -> Path:
    """Move `src` into `root/rel_dir` under a free name; write NAME.error.json first when given.

    The error document goes first so that a crash in between leaves the file in the inbox (it is
    processed again) rather than in failed/ without its reason. `root` itself must exist: a missing
    done/failed folder may be an unmounted disk, and creating it would fill the mount point instead.
    """
    with _MOVE_LOCK:
        if not root.is_dir():
            raise FileNotFoundError(errno.ENOENT, "folder is missing", str(root))
        dest_dir = root / rel_dir
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = _free_name(dest_dir, os.path.basename(src), error_doc is not None)
        side = target.with_name(target.name + ".error.json")
        if error_doc is not None:
            doc = dict(error_doc, file=target.name, failed_path=str(target))
            _write_json(side, doc)
        try:
            # Renames are not followed by a directory fsync: after a power cut the worst case is
            # the file back in the inbox, processed again under the same id.
            os.replace(src, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                if error_doc is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(side)  # the file stays in the inbox: no reason without its file
                raise
            try:
                _copy_across(src, target)
            except BaseException:
                if error_doc is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(side)
                raise
        return target


def _copy_across(src: str, target: Path) -> None:
    """Move across filesystems: the copy is on disk before the original is removed."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        with contextlib.suppress(OSError):
            os.utime(tmp, ns=(os.stat(src).st_atime_ns, os.stat(src).st_mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    os.unlink(src)
