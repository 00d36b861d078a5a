"""Hot-folder source against real temp folders and real inotify (or polling) through watchdog.

No mocks and no timing assertions: every test waits on a condition with a generous timeout. "Exactly
once" is checked after a marker file dropped later has come through, which proves the source has
processed every earlier event.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_ocr.errors import ConfigError
from edge_ocr.sources.folder import (
    FinishError,
    FolderItem,
    FolderSettings,
    FolderSource,
    fs_type,
    is_network_fs,
)

TIMEOUT = 15.0


class Collector:
    """A consumer: records items; with `complete=True` finishes each one like the daemon would."""

    def __init__(self) -> None:
        self.items: list[FolderItem] = []
        self.cond = threading.Condition()
        self.source: FolderSource | None = None
        self.complete = False

    def __call__(self, item: FolderItem) -> None:
        # Completed before it is recorded, so a test that saw the item also sees it in done/.
        if self.complete and self.source is not None:
            self.source.complete(item.path, ok=True)
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list[FolderItem]], bool], timeout: float = TIMEOUT) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.items), timeout), [i.relpath for i in self.items]

    def wait_names(self, *names: str, timeout: float = TIMEOUT) -> None:
        self.wait_for(lambda items: set(names) <= {i.relpath for i in items}, timeout)

    def counts(self) -> Counter[str]:
        with self.cond:
            return Counter(i.relpath for i in self.items)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    d = {k: tmp_path / k for k in ("inbox", "done", "failed", "outside")}
    for p in d.values():
        p.mkdir()
    return d


@pytest.fixture
def make_source(dirs: dict[str, Path]) -> Iterator[Callable[..., tuple[FolderSource, Collector]]]:
    started: list[FolderSource] = []

    def make(*, output: Any = None, can_accept: Any = None, complete: bool = True, **kw: Any):
        kw = {"stable_s": 0.5, "rescan_s": 60.0, "poll_interval_s": 0.2, **kw}
        kw.setdefault("done_dir", None if kw.get("on_success") == "delete" else dirs["done"])
        settings = FolderSettings(name="inbox", path=dirs["inbox"], failed_dir=dirs["failed"], **kw)
        col = Collector()
        col.complete = complete
        src = FolderSource(settings, threading.Event(), output if output is not None else col, can_accept)
        col.source = src
        src.start()
        started.append(src)
        return src, col

    yield make
    for src in started:
        src.stop()


def write(path: Path, data: bytes = b"\xff\xd8 image bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def settle(col: Collector, inbox: Path, name: str = "zz-marker.jpg") -> None:
    """Drop a marker and wait for it: every event before it has then been handled."""
    write(inbox / name, b"marker")
    col.wait_names(name)


def test_copied_file_is_yielded_once_with_hash(make_source, dirs, tmp_path: Path) -> None:
    src, col = make_source()
    original = write(tmp_path / "a.jpg", os.urandom(50_000))
    shutil.copy(original, dirs["inbox"] / "a.jpg")
    col.wait_names("a.jpg")
    src.request_rescan()
    settle(col, dirs["inbox"])
    assert col.counts()["a.jpg"] == 1
    item = next(i for i in col.items if i.relpath == "a.jpg")
    assert item.data == original.read_bytes() and item.size == 50_000 and item.error is None
    assert item.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert (dirs["done"] / "a.jpg").read_bytes() == original.read_bytes()
    assert src.mode == "inotify"


def test_slow_chunked_writer_is_yielded_once_after_close(make_source, dirs) -> None:
    _, col = make_source(stable_s=3.0)
    chunks = [os.urandom(4096) for _ in range(15)]
    with open(dirs["inbox"] / "slow.jpg", "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            time.sleep(0.05)
        assert col.counts()["slow.jpg"] == 0, "taken before the writer closed it"
    col.wait_names("slow.jpg")
    settle(col, dirs["inbox"])
    assert col.counts()["slow.jpg"] == 1
    assert next(i for i in col.items if i.relpath == "slow.jpg").data == b"".join(chunks)


WRITER = """
import sys, time
f = open(sys.argv[1], "wb")
for _ in range(10):
    f.write(b"x" * 1000); f.flush(); time.sleep(0.05)
print("written", flush=True)
time.sleep(120)  # keeps the fd open: never closes cleanly
"""


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_writer_that_never_closes_is_yielded_once_stable(make_source, dirs, poll: bool) -> None:
    _, col = make_source(stable_s=1.0, poll=poll)
    target = dirs["inbox"] / "net.jpg"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        col.wait_names("net.jpg")
        assert proc.poll() is None, "the writer still holds the file open"
        item = next(i for i in col.items if i.relpath == "net.jpg")
        assert item.data == b"x" * 10_000
    finally:
        proc.kill()
        proc.wait()
    settle(col, dirs["inbox"])
    assert col.counts()["net.jpg"] == 1


def test_moved_in_files(make_source, dirs) -> None:
    _, col = make_source(stable_s=30.0)  # long: only the move itself may make these complete
    os.rename(write(dirs["outside"] / "m.png", b"moved"), dirs["inbox"] / "m.png")
    write(dirs["inbox"] / "r.jpg.part", b"renamed at the end")
    os.rename(dirs["inbox"] / "r.jpg.part", dirs["inbox"] / "r.jpg")
    col.wait_names("m.png", "r.jpg")
    settle(col, dirs["inbox"])
    assert col.counts() == Counter({"m.png": 1, "r.jpg": 1, "zz-marker.jpg": 1})
    assert next(i for i in col.items if i.relpath == "r.jpg").data == b"renamed at the end"


def test_files_present_at_start(make_source, dirs) -> None:
    for n in range(5):
        write(dirs["inbox"] / f"old{n}.jpg", f"old {n}".encode())
    write(dirs["inbox"] / "sub" / "nested.jpg")  # not recursive: left alone
    _, col = make_source()
    col.wait_names(*(f"old{n}.jpg" for n in range(5)))
    settle(col, dirs["inbox"])
    assert "sub/nested.jpg" not in col.counts()
    assert (dirs["inbox"] / "sub" / "nested.jpg").exists()
    assert sorted(p.name for p in dirs["done"].iterdir()) == [f"old{n}.jpg" for n in range(5)] + [
        "zz-marker.jpg"
    ]


def test_hidden_temp_and_unmatched_files_are_ignored(make_source, dirs) -> None:
    ignored = [
        ".hidden.jpg",
        "~lock.jpg",
        "a.jpg.part",
        "b.tmp",
        "c.JPG.TMP",
        "notes.txt",
        "x.jpg.error.json",
    ]
    for name in ignored[:3]:
        write(dirs["inbox"] / name)  # present at start
    _, col = make_source(recursive=True)
    for name in ignored[3:]:
        write(dirs["inbox"] / name)
    write(dirs["inbox"] / ".cache" / "in_hidden_dir.jpg")
    settle(col, dirs["inbox"])
    assert set(col.counts()) == {"zz-marker.jpg"}
    for name in ignored:
        assert (dirs["inbox"] / name).exists()


def test_include_exclude_case_insensitive(make_source, dirs) -> None:
    _, col = make_source(include=("*.png", "*.jpg"), exclude=("skip_*", "raw/*"), recursive=True)
    for name in ["A.PNG", "b.png", "skip_1.png", "c.bmp", "raw/r.png", "keep/k.jpg"]:
        write(dirs["inbox"] / name)
    col.wait_names("A.PNG", "b.png", "keep/k.jpg")
    settle(col, dirs["inbox"])
    assert set(col.counts()) == {"A.PNG", "b.png", "keep/k.jpg", "zz-marker.jpg"}


def test_recursion_keeps_structure_and_ignores_done_failed_inside(make_source, dirs) -> None:
    inbox = dirs["inbox"]
    write(inbox / "a" / "b" / "deep.jpg", b"deep at start")
    settings = FolderSettings(
        name="rec",
        path=inbox,
        done_dir=inbox / "done",
        failed_dir=inbox / "failed",
        recursive=True,
        stable_s=0.5,
    )
    col = Collector()
    col.complete = True
    src = FolderSource(settings, threading.Event(), col)
    col.source = src
    src.start()
    try:
        col.wait_names("a/b/deep.jpg")
        (inbox / "new" / "dir").mkdir(parents=True)
        write(inbox / "new" / "dir" / "later.jpg", b"later")
        write(inbox / "same.jpg", b"top")
        col.wait_names("new/dir/later.jpg", "same.jpg")
        src.request_rescan()
        settle(col, inbox)
        assert set(col.counts().values()) == {1}
        assert (inbox / "done" / "a" / "b" / "deep.jpg").read_bytes() == b"deep at start"
        assert (inbox / "done" / "new" / "dir" / "later.jpg").read_bytes() == b"later"
        assert (inbox / "done" / "same.jpg").exists()
        assert not any(k.startswith(("done/", "failed/")) for k in col.counts())
    finally:
        src.stop()


def test_polling_mode(make_source, dirs, tmp_path: Path) -> None:
    src, col = make_source(poll=True)
    assert src.mode == "polling"
    shutil.copy(write(tmp_path / "p.jpg", b"polled"), dirs["inbox"] / "p.jpg")
    col.wait_names("p.jpg")
    settle(col, dirs["inbox"])
    assert col.counts()["p.jpg"] == 1
    assert (dirs["done"] / "p.jpg").read_bytes() == b"polled"


def test_done_name_clash_gets_suffix_never_overwrites(make_source, dirs) -> None:
    write(dirs["done"] / "a.jpg", b"already there")
    _, col = make_source()
    for n in range(1, 3):
        write(dirs["inbox"] / "a.jpg", f"round {n}".encode())
        col.wait_for(lambda items, n=n: sum(i.relpath == "a.jpg" for i in items) == n)
        col.wait_for(lambda _: not (dirs["inbox"] / "a.jpg").exists())
    assert (dirs["done"] / "a.jpg").read_bytes() == b"already there"
    assert (dirs["done"] / "a.1.jpg").read_bytes() == b"round 1"
    assert (dirs["done"] / "a.2.jpg").read_bytes() == b"round 2"


def test_failure_moves_to_failed_with_error_json(make_source, dirs) -> None:
    write(dirs["failed"] / "bad.jpg", b"earlier failure")
    src, col = make_source(complete=False)
    write(dirs["inbox"] / "bad.jpg", b"not an image")
    col.wait_names("bad.jpg")
    item = col.items[0]
    dest = src.complete(item.path, ok=False, reason={"type": "InputError", "message": "cannot decode"})
    assert dest == dirs["failed"] / "bad.1.jpg" and dest.read_bytes() == b"not an image"
    assert not item.path.exists()
    doc = json.loads((dirs["failed"] / "bad.1.jpg.error.json").read_text())
    assert doc["error_type"] == "InputError"
    assert doc["reason"]["message"] == "cannot decode"
    assert doc["original_path"] == str(item.path)
    assert doc["file"] == "bad.1.jpg" and doc["failed_at"]
    assert src.stats()["failed"] == 1 and src.stats()["in_flight"] == 0


def test_a_file_that_cannot_be_moved_stays_in_flight_until_completed_again(make_source, dirs) -> None:
    """done/ gone (an unplugged stick): FinishError names the folder, done/ is not created at the mount
    point, the file stays in the inbox and is not handed out again; once done/ is back it is moved."""
    src, col = make_source(complete=False, rescan_s=0.2)
    write(dirs["inbox"] / "a.jpg")
    col.wait_names("a.jpg")
    dirs["done"].rmdir()
    with pytest.raises(FinishError) as info:
        src.complete(col.items[0].path, ok=True)
    assert info.value.folder == "done" and "check free space and write access" in str(info.value)
    assert not dirs["done"].exists(), "a missing done_dir is not created by a move"
    assert (dirs["inbox"] / "a.jpg").exists() and src.stats()["in_flight"] == 1
    time.sleep(0.6)  # a few rescans: an in-flight file is not handed out twice
    assert col.counts()["a.jpg"] == 1
    dirs["done"].mkdir()
    assert src.complete(col.items[0].path, ok=True) == dirs["done"] / "a.jpg"
    assert src.stats()["in_flight"] == 0 and src.stats()["done"] == 1


def test_oversize_is_reported_not_read(make_source, dirs) -> None:
    src, col = make_source(max_bytes=1000, complete=False)
    write(dirs["inbox"] / "big.jpg", b"b" * 1001)
    col.wait_names("big.jpg")
    item = col.items[0]
    assert item.data is None and item.sha256 is None
    assert item.error is not None and item.error["type"] == "oversize"
    src.complete(item.path, ok=False, reason=item.error)
    assert json.loads((dirs["failed"] / "big.jpg.error.json").read_text())["error_type"] == "oversize"


def test_zero_byte_file_is_yielded_after_stable(make_source, dirs) -> None:
    _, col = make_source()
    (dirs["inbox"] / "empty.jpg").touch()
    col.wait_names("empty.jpg")
    assert col.items[0].data == b"" and col.items[0].size == 0


def test_on_success_delete(make_source, dirs) -> None:
    _, col = make_source(on_success="delete")
    write(dirs["inbox"] / "gone.jpg")
    col.wait_names("gone.jpg")
    col.wait_for(lambda _: not (dirs["inbox"] / "gone.jpg").exists())
    assert not any(dirs["done"].iterdir())


def test_move_across_filesystems(make_source, dirs) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == dirs["inbox"].stat().st_dev:
        pytest.skip("no second filesystem to move to")
    other = Path(tempfile.mkdtemp(dir=shm))
    try:
        _, col = make_source(done_dir=other)
        write(dirs["inbox"] / "x.jpg", b"across")
        col.wait_names("x.jpg")
        col.wait_for(lambda _: (other / "x.jpg").exists())
        assert (other / "x.jpg").read_bytes() == b"across"
        assert not (dirs["inbox"] / "x.jpg").exists()
        assert [p.name for p in other.iterdir()] == ["x.jpg"]  # no temp file left behind
    finally:
        shutil.rmtree(other)


def test_file_changed_while_in_flight_is_offered_again(make_source, dirs) -> None:
    src, col = make_source(complete=False)
    path = write(dirs["inbox"] / "cam.jpg", b"first")
    col.wait_names("cam.jpg")
    write(path, b"second frame")
    assert src.complete(col.items[0].path, ok=True) is None  # changed: left in the inbox
    col.wait_for(lambda items: len(items) == 2)
    assert col.items[1].data == b"second frame"
    assert src.complete(col.items[1].path, ok=True) == dirs["done"] / "cam.jpg"


def test_back_pressure_with_bounded_queue_holds_then_releases(make_source, dirs) -> None:
    for n in range(10):
        write(dirs["inbox"] / f"f{n}.jpg", bytes([n]))
    out: queue.Queue[FolderItem] = queue.Queue(maxsize=2)
    src, _ = make_source(output=out)
    deadline = time.monotonic() + TIMEOUT
    while not src.stats()["holding"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert out.full()
    assert len(list(dirs["inbox"].iterdir())) == 10  # held files stay in the inbox
    seen: list[str] = []
    while len(seen) < 10:
        item = out.get(timeout=TIMEOUT)
        seen.append(item.relpath)
        src.complete(item.path, ok=True)
    assert sorted(seen) == sorted(f"f{n}.jpg" for n in range(10))
    assert not any(dirs["inbox"].iterdir())
    assert src.stats()["handed_out"] == 10


def test_back_pressure_with_can_accept(make_source, dirs) -> None:
    room = threading.Event()
    src, col = make_source(can_accept=room.is_set)
    for n in range(3):
        write(dirs["inbox"] / f"h{n}.jpg")
    deadline = time.monotonic() + TIMEOUT
    while src.stats()["ready"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not col.items and src.stats()["holding"]
    room.set()
    col.wait_names("h0.jpg", "h1.jpg", "h2.jpg")
    settle(col, dirs["inbox"])
    assert set(col.counts().values()) == {1}


def test_queue_and_can_accept_both_hold(make_source, dirs) -> None:
    room = threading.Event()
    out: queue.Queue[FolderItem] = queue.Queue(maxsize=4)
    src, _ = make_source(output=out, can_accept=room.is_set)
    write(dirs["inbox"] / "q.jpg")
    deadline = time.monotonic() + TIMEOUT
    while not src.stats()["holding"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert out.empty()  # the queue has room, but can_accept() said no
    room.set()
    assert out.get(timeout=TIMEOUT).relpath == "q.jpg"


def test_backlog_of_1000_files_drains_each_once(make_source, dirs) -> None:
    for n in range(1000):
        write(dirs["inbox"] / f"b{n:04d}.jpg", n.to_bytes(2, "big"))
    out: queue.Queue[FolderItem] = queue.Queue(maxsize=16)
    src, _ = make_source(output=out)
    seen: Counter[str] = Counter()
    while len(seen) < 1000:
        item = out.get(timeout=TIMEOUT)
        assert item.data == int(item.relpath[1:5]).to_bytes(2, "big")
        seen[item.relpath] += 1
        src.complete(item.path, ok=True)
    src.request_rescan()
    with pytest.raises(queue.Empty):
        out.get(timeout=1.0)  # nothing more: each file once
    assert set(seen.values()) == {1}
    assert len(list(dirs["done"].iterdir())) == 1000
    assert not any(dirs["inbox"].iterdir())


def test_stop_joins_and_external_stop_event_ends_thread(dirs) -> None:
    settings = FolderSettings(name="s", path=dirs["inbox"], done_dir=dirs["done"], failed_dir=dirs["failed"])
    src = FolderSource(settings, threading.Event(), lambda item: None)
    src.start()
    src.stop()
    assert src._thread is not None and not src._thread.is_alive()
    stop = threading.Event()
    src2 = FolderSource(settings, stop, lambda item: None)
    src2.start()
    stop.set()
    assert src2._thread is not None
    src2._thread.join(TIMEOUT)
    assert not src2._thread.is_alive()
    src2.stop()


def test_settings_validation(dirs) -> None:
    base = {"name": "s", "path": dirs["inbox"], "failed_dir": dirs["failed"]}
    with pytest.raises(ConfigError, match="done_dir"):
        FolderSettings(**base)  # on_success move needs done_dir
    with pytest.raises(ConfigError, match="done_dir"):
        FolderSettings(**base, done_dir=dirs["done"], on_success="delete")
    with pytest.raises(ConfigError, match="stable_s"):
        FolderSettings(**base, on_success="delete", stable_s=0)
    with pytest.raises(ConfigError, match="poll"):
        FolderSettings(**base, on_success="delete", poll="sometimes")  # type: ignore[arg-type]
    ok = FolderSettings(**base, on_success="delete", include=("*.JPG",))
    assert ok.include == ("*.jpg",)


def test_network_mounts_are_detected() -> None:
    mounts = (
        "/dev/root / ext4 rw 0 0\n"
        "server:/export /mnt/nas nfs4 rw 0 0\n"
        "//nas/share /mnt/my\\040share cifs rw 0 0\n"
        "sshfs#u@h: /mnt/ssh fuse.sshfs rw 0 0\n"
        "/dev/sda1 /media/usb fuseblk rw 0 0\n"
    )
    assert fs_type("/var/lib/edge-ocr/inbox", mounts) == "ext4"
    assert fs_type("/mnt/nas/inbox", mounts) == "nfs4"
    assert fs_type("/mnt/my share/in", mounts) == "cifs"
    assert fs_type("/mnt/nasty", mounts) == "ext4"  # a prefix of the name is not a parent
    assert [is_network_fs(t) for t in ("nfs4", "cifs", "fuse.sshfs", "fuseblk", "ext4")] == [
        True,
        True,
        True,
        False,
        False,
    ]
