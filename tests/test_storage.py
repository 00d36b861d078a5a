"""The storage guard's rules, in-process on real folders: which errors are storage conditions, the
backoff after a failed write, one warning per episode, and a deleted folder made again."""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

from edge_ocr.config import StorageConfig
from edge_ocr.errors import PublishError
from edge_ocr.storage import StorageGuard, condition_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_condition_of_reads_os_and_sqlite_errors_through_their_causes() -> None:
    def wrapped(inner: BaseException) -> PublishError:
        try:
            raise PublishError("cannot store message") from inner
        except PublishError as exc:
            return exc

    assert condition_of(wrapped(OSError(errno.ENOSPC, "No space left on device"))) == "full"
    assert condition_of(OSError(errno.EROFS, "Read-only file system")) == "read_only"
    assert condition_of(wrapped(sqlite3.OperationalError("database or disk is full"))) == "full"
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    assert condition_of(wrapped(readonly)) == "read_only"
    assert condition_of(ValueError("a bug")) is None
    assert condition_of(PublishError("schema too new")) is None


def test_a_failed_write_holds_its_folder_for_a_backoff_and_warns_once(tmp_path: Path, caplog) -> None:
    clock = Clock()
    guard = StorageGuard([("state", "state_dir", tmp_path)], StorageConfig(min_free_mb=0), clock)
    guard.check()
    assert guard.ok and guard.usable(["state"])
    full = OSError(errno.ENOSPC, "No space left on device")
    with caplog.at_level(logging.INFO, logger="edge_ocr.storage"):
        assert guard.failed("state", full) == "full"
        assert not guard.usable(["state"]) and "state_dir" in (guard.reason() or "")
        guard.check()
        assert not guard.usable(["state"]), "held for the backoff, whatever statvfs says"
        clock.now += 1.1
        guard.check()
        assert guard.usable(["state"]), "tried again after the backoff"
        assert guard.failed("state", full) == "full"  # fails again: same episode, longer backoff
        clock.now += 1.1
        guard.check()
        assert not guard.usable(["state"])
        clock.now += 1.0
        guard.check()
        guard.worked("state")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "is full" in warnings[0].getMessage()
    assert "all folders usable again" in caplog.records[-1].getMessage()
    assert guard.ok and guard.snapshot()["folders"][0]["condition"] == "ok"


def test_a_deleted_folder_on_a_mounted_filesystem_is_made_again(tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir()
    guard = StorageGuard([("done:inbox", "done_dir of inbox", done)], StorageConfig())
    done.rmdir()
    guard.check()
    assert done.is_dir() and guard.usable(["done:inbox"])
