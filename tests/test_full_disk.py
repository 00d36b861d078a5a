"""A full disk, a read-only or an unmounted folder degrade the daemon; they never stop it (issue 13).

Real daemon (`python -m edge_ocr run`), real mosquitto, real files, and real filesystems that fill up:
each test mounts a size-limited tmpfs as root (`mount -t tmpfs -o size=...`) and unmounts it at
teardown; where mounting is not allowed the test is skipped with the reason. What is asserted is what
a user sees: /healthz 503 with a reason that names the folder and its free space, /metrics, systemd's
STATUS=, the retained MQTT health (Home Assistant's problem sensor), the log's warnings (one per
episode, no traceback), and every file accounted for (inbox + done/ + failed/ + delivered results) at
every moment, with every result delivered once space is back, without a restart.

Issue 13's "What must hold", test by test:
- started on a full state filesystem: test_started_on_a_full_state_disk_holds_files_then_delivers_all
- the disk filling while running, one warning per episode: test_disk_filling_while_running_...
- a done_dir made read-only mid-run (then unmounted): test_done_dir_read_only_then_unmounted_...
- the engine with its graph cache on a full tmpfs: test_engine_starts_with_its_graph_cache_on_a_full_disk
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess, NotifySocket, daemon_config, drop, get, names_in, tiny_png, topic
from mqtt_broker import Mosquitto, Subscriber, free_port, wait_until

T_FILE = 60.0  # OCR on a loaded 2-core machine: generous, never asserted as a timing
# Small reserves so a few-MiB tmpfs can be "short of space" and then have room again.
STORAGE = {"min_free_mb": 1, "min_free_percent": 10, "check_interval_s": 0.3}
STORAGE_WARNING = r"WARNING edge_ocr\.storage: "


# ---------------------------------------------------------------------------------------- filesystems


class Tmpfs:
    """A size-limited tmpfs mounted at `path` (as root); `fill` leaves a given number of bytes free."""

    def __init__(self, path: Path, size_kb: int) -> None:
        self.path = path
        self.size_kb = size_kb
        self.filler = path / ".filler"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={self.size_kb}k,mode=0755", "tmpfs", str(self.path))

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], capture_output=True)
        if os.path.ismount(self.path):
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    def remount(self, mode: str) -> None:
        _mount("-o", f"remount,{mode}", str(self.path))

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Grow the filler file until at most `leave` bytes are free (0: until ENOSPC)."""
        chunk = b"\0" * 65536
        with open(self.filler, "ab") as f:
            while (free := self.free()) > leave:
                try:
                    f.write(chunk[: max(4096, min(len(chunk), free - leave))])
                    f.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)


def _mount(*args: str) -> None:
    p = subprocess.run(["mount", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise OSError(p.stderr.strip() or f"mount {' '.join(args)} failed")


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, int], Tmpfs]]:
    made: list[Tmpfs] = []

    def make(path: Path, size_kb: int) -> Tmpfs:
        fs = Tmpfs(path, size_kb)
        try:
            fs.mount()
        except (OSError, FileNotFoundError) as exc:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {exc}")
        made.append(fs)
        return fs

    yield make
    for fs in reversed(made):
        fs.unmount()


# ---------------------------------------------------------------------------------------- the daemon


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto, ["edge-ocr/#"])
    yield sub
    sub.close()


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    code, body = get(f"http://127.0.0.1:{port}/healthz")
    return code, json.loads(body)


def metric(port: int, name: str) -> list[str]:
    return [ln for ln in get(f"http://127.0.0.1:{port}/metrics")[1].splitlines() if ln.startswith(name + "{")]


def delivered(sub: Subscriber) -> set[str]:
    return {json.loads(p)["file"] for p in sub.payloads(topic("result/inbox"))}


def health_docs(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads(topic("health"))]


class Accounting:
    """Samples, in a thread, that every dropped file is in the inbox, done/, failed/ or delivered.

    The inbox is listed before done/: a rename between the two listings shows a file twice, never
    not at all."""

    def __init__(self, root: Path, sub: Subscriber) -> None:
        self.root, self.sub = root, sub
        self.expected: set[str] = set()
        self.missing: list[tuple[int, set[str]]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="accounting", daemon=True)

    def drop(self, names: list[str]) -> None:
        for name in names:
            drop(self.root / "inbox", name, tiny_png(name.split(".")[0]))
            self.expected.add(name)

    def seen(self) -> set[str]:
        inbox = names_in(self.root / "inbox")
        return (
            inbox
            | names_in(self.root / "done" / "inbox")
            | names_in(self.root / "failed" / "inbox")
            | (delivered(self.sub))
        )

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            expected = set(self.expected)
            gone = expected - self.seen()
            self.samples += 1
            if gone:
                self.missing.append((self.samples, gone))

    def __enter__(self) -> Accounting:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        assert self.samples > 10
        assert not self.missing, f"files missing from inbox, done/, failed/ and results: {self.missing[:3]}"


def config(root: Path, broker: Mosquitto, port: int, **sections: Any) -> dict[str, Any]:
    cfg = daemon_config(root, broker, http={"enabled": True, "port": port}, storage=STORAGE, **sections)
    cfg["sources"][0]["rescan_s"] = 2
    cfg["sources"][0]["stable_s"] = 0.5
    cfg["sources"][0]["settle_s"] = 0.1
    return cfg


def assert_quiet_log(d: DaemonProcess) -> None:
    log = d.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


# ---------------------------------------------------------------------------------------- the tests


def test_started_on_a_full_state_disk_holds_files_then_delivers_all(
    tmp_path, tmpfs, mosquitto, subscriber, daemons
):
    """state_dir on a full filesystem: the daemon comes up (the outbox cannot even be created), says so
    everywhere, holds the files in the inbox; once space is freed every result is delivered, no restart."""
    root = tmp_path / "box"
    state = tmpfs(root / "state", 2048)
    state.fill(0)
    assert state.free() == 0
    port = free_port()
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        d = daemons(config(root, mosquitto, port), env={"NOTIFY_SOCKET": str(notify.path)})
        with Accounting(root, subscriber) as acc:
            acc.drop([f"early{i}.png" for i in range(3)])
            d.start_ready()
            acc.drop([f"late{i}.png" for i in range(3)])

            code, h = healthz(port)
            assert code == 503 and h["degraded"] is True, h
            assert "state_dir" in h["reason"] and str(root / "state") in h["reason"], h["reason"]
            assert re.search(r"\d+\.\d MB free", h["reason"]), h["reason"]
            assert h["alive"] is True, "degraded is not dead: the watchdog must keep getting pings"
            assert any(float(ln.split()[-1]) == 1 for ln in metric(port, "edge_ocr_degraded")), metric(
                port, "edge_ocr"
            )
            assert metric(port, "edge_ocr_storage_free_bytes"), "free space per folder in /metrics"
            assert notify.wait_for("READY", "1", 10)
            assert wait_until(
                lambda: any(k == "STATUS" and "degraded" in v and "free" in v for k, v in notify.fields()), 10
            ), notify.fields()
            assert subscriber.wait_for(lambda _: any(h["problem"] for h in health_docs(subscriber)), 15)
            assert health_docs(subscriber)[-1]["reason"], "the MQTT health names the condition"

            # Held: nothing is taken, moved or failed while the disk is full.
            assert not wait_until(lambda: bool(delivered(subscriber)), 4)
            assert names_in(root / "inbox") == acc.expected
            assert names_in(root / "failed" / "inbox") == set()
            assert d.running

            state.empty()
            assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, 2 * T_FILE), d.tail()
            assert wait_until(lambda: names_in(root / "done" / "inbox") == acc.expected, 30), d.tail()
            assert wait_until(lambda: healthz(port)[0] == 200, 30), healthz(port)
            assert subscriber.wait_for(lambda _: health_docs(subscriber)[-1]["problem"] is False, 15)
            assert any(float(ln.split()[-1]) == 0 for ln in metric(port, "edge_ocr_degraded"))
        assert names_in(root / "inbox") == set()
        assert d.runs == 1 and d.running, "recovered without a restart"
        assert len(re.findall(STORAGE_WARNING, d.log())) == 1, d.log()
        assert d.log_has(r"INFO edge_ocr\.storage: storage: all folders usable again")
        assert_quiet_log(d)
        assert d.stop() == 0
    finally:
        notify.close()


def test_disk_filling_while_running_holds_files_with_one_warning_per_episode(
    tmp_path, tmpfs, mosquitto, subscriber, daemons
):
    """Two episodes of a state disk filling up while files arrive: each gives exactly one warning, holds
    the new files, keeps the results flowing, and clears by itself when the space comes back."""
    root = tmp_path / "box"
    state = tmpfs(root / "state", 4096)
    port = free_port()
    d = daemons(config(root, mosquitto, port)).start_ready()
    with Accounting(root, subscriber) as acc:
        acc.drop(["a0.png", "a1.png"])
        assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, T_FILE), d.tail()
        assert healthz(port)[0] == 200

        for episode in (1, 2):
            state.fill(leave=100 * 1024)  # below the reserve (10% of 4 MiB), not yet ENOSPC
            assert wait_until(lambda: healthz(port)[0] == 503, 15), healthz(port)
            reason = healthz(port)[1]["reason"]
            assert "short of space" in reason and "free" in reason and "reserve" in reason, reason
            held = [f"e{episode}-{i}.png" for i in range(4)]
            acc.drop(held)
            assert not wait_until(lambda held=set(held): bool(held & delivered(subscriber)), 3)
            assert set(held) <= names_in(root / "inbox"), "new files wait in the inbox"

            state.empty()
            assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, 2 * T_FILE), d.tail()
            assert wait_until(lambda: healthz(port)[0] == 200, 15), healthz(port)
            assert len(re.findall(STORAGE_WARNING, d.log())) == episode, d.log()
    assert wait_until(lambda: names_in(root / "done" / "inbox") == acc.expected, 30)
    assert len(re.findall(r"INFO edge_ocr\.storage: storage: all folders usable again", d.log())) == 2
    assert_quiet_log(d)
    assert d.stop() == 0


def test_disk_full_without_a_reserve_is_handled_as_an_expected_condition(
    tmp_path, tmpfs, mosquitto, subscriber, daemons
):
    """min_free_mb: 0 (no guard): SQLite meets "database or disk is full" for real. One warning for the
    episode, no traceback per file, the files stay in the inbox, and all is delivered once space returns."""
    root = tmp_path / "box"
    state = tmpfs(root / "state", 4096)
    port = free_port()
    cfg = config(root, mosquitto, port)
    cfg["storage"] = {"min_free_mb": 0, "check_interval_s": 0.3}
    d = daemons(cfg).start_ready()
    with Accounting(root, subscriber) as acc:
        acc.drop(["warm.png"])
        assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, T_FILE), d.tail()
        state.fill(0)
        acc.drop([f"f{i}.png" for i in range(4)])
        assert wait_until(lambda: healthz(port)[0] == 503, T_FILE), healthz(port)
        assert "is full" in healthz(port)[1]["reason"], healthz(port)[1]["reason"]
        assert d.wait_log(STORAGE_WARNING + r".*state_dir .* is full", 10), d.tail()
        state.empty()
        assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, 2 * T_FILE), d.tail()
        assert wait_until(lambda: healthz(port)[0] == 200, 90), healthz(port)
    assert wait_until(lambda: names_in(root / "done" / "inbox") == acc.expected, 30)
    assert len(re.findall(STORAGE_WARNING, d.log())) == 1, d.log()
    assert_quiet_log(d)
    assert d.stop() == 0


def test_done_dir_read_only_then_unmounted_degrades_and_recovers(
    tmp_path, tmpfs, mosquitto, subscriber, daemons
):
    """done_dir on its own filesystem: remounted read-only, then unmounted (a pulled USB stick). Each is a
    degraded health naming done_dir and the condition; files wait; each recovers when the disk is back."""
    root = tmp_path / "box"
    done = tmpfs(root / "done", 2048)
    port = free_port()
    d = daemons(config(root, mosquitto, port)).start_ready()
    with Accounting(root, subscriber) as acc:
        acc.drop(["before.png"])
        assert wait_until(lambda: names_in(root / "done" / "inbox") == {"before.png"}, T_FILE), d.tail()

        done.remount("ro")
        assert wait_until(lambda: healthz(port)[0] == 503, 15), healthz(port)
        reason = healthz(port)[1]["reason"]
        assert "done_dir of inbox" in reason and "read-only" in reason, reason
        acc.drop(["ro0.png", "ro1.png"])
        assert not wait_until(lambda: bool({"ro0.png", "ro1.png"} & delivered(subscriber)), 3)
        assert {"ro0.png", "ro1.png"} <= names_in(root / "inbox")
        done.remount("rw")
        assert wait_until(lambda: names_in(root / "done" / "inbox") == acc.expected, T_FILE), d.tail()
        assert wait_until(lambda: healthz(port)[0] == 200, 15), healthz(port)
        # Pulling the stick takes its files with it: only once their results are delivered may it go
        # (else the accounting sees a file that is nowhere, through no fault of the daemon's).
        assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, T_FILE), d.tail()

        done.unmount()  # the stick is pulled: done/inbox is gone, done/ is a bare mount point
        assert wait_until(lambda: healthz(port)[0] == 503, 15), healthz(port)
        reason = healthz(port)[1]["reason"]
        assert "done_dir of inbox" in reason and "missing" in reason, reason
        acc.drop(["gone0.png"])
        assert not wait_until(lambda: "gone0.png" in delivered(subscriber), 3)
        assert not (root / "done" / "inbox").exists(), "nothing is written to the bare mount point"
        done.mount()  # the stick is back, empty (another one, or reformatted)
        (root / "done" / "inbox").mkdir()
        assert subscriber.wait_for(lambda _: delivered(subscriber) == acc.expected, T_FILE), d.tail()
        assert wait_until(lambda: healthz(port)[0] == 200, 15), healthz(port)
        assert wait_until(lambda: "gone0.png" in names_in(root / "done" / "inbox"), 15)
    assert d.runs == 1 and d.running
    assert_quiet_log(d)
    assert d.stop() == 0


@pytest.mark.parametrize("attempt", ["skipped", "failed"])
def test_engine_starts_with_its_graph_cache_on_a_full_disk(
    models_dir, tmp_path, tmpfs, caplog, monkeypatch, attempt
):
    """No ModelError for a full cache disk: the engine optimizes in memory, with one warning naming the
    folder and its free space. `skipped`: the free-space check avoids the attempt; `failed`: onnxruntime
    tries and fails to write (INVALID_PROTOBUF), and the session is retried without the cache."""
    from edge_ocr.inference import graphcache
    from edge_ocr.pipeline import Engine, EngineSettings

    fs = tmpfs(tmp_path / "cache", 1024)
    (fs.path / "graphs").mkdir()
    fs.fill(leave=0 if attempt == "skipped" else 64 * 1024)
    if attempt == "failed":
        monkeypatch.setattr(graphcache, "STAGING_FACTOR", 0)
    monkeypatch.setattr(graphcache, "_warned", set())
    with caplog.at_level(logging.INFO, logger="edge_ocr"):
        engine = Engine(EngineSettings(models_dir=models_dir, graph_cache=fs.path / "graphs"))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert str(fs.path / "graphs") in text and "MB free" in text, text
    if attempt == "failed":
        assert "could not write" in text, text
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(tiny_png("cache 42", 160, 40), np.uint8), cv2.IMREAD_COLOR)
    assert engine.run_line(img).lines, "the engine reads"
    assert not [p for p in (fs.path / "graphs").iterdir() if p.name.endswith(".tmp")], "no staging file left"
