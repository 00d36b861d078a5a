"""Run the real daemon (`python -m edge_ocr run --config FILE`) as a subprocess, for end-to-end tests.

- `daemon_config(root, broker, ...)`: a config dict with real folders below `root` (inbox/, done/,
  failed/, state/) and, given a `Mosquitto`, an MQTT section with short reconnect delays.
- `DaemonProcess`: writes the config as YAML, starts the daemon with its logs in files, waits on log
  lines, sends real signals (SIGTERM, SIGHUP, SIGKILL) and reads its stdout.
- `NotifySocket`: a unix datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
- Image helpers: `line_crops` from the eval data and `tiny_png` made with OpenCV, `drop` to put a
  file into an inbox the way a well-behaved writer does (write NAME.part, rename).

Every wait is a condition with a timeout; nothing here asserts a timing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from mqtt_broker import Mosquitto, wait_until

REPO = Path(__file__).resolve().parents[1]
DEVICE = "pi-test"
PREFIX = "edge-ocr"


def topic(kind: str, *, prefix: str = PREFIX, device: str = DEVICE) -> str:
    """`status`, `result/inbox`, `cmd/pause`, ... of the test device."""
    return f"{prefix}/{device}/{kind}"


def daemon_config(
    root: Path,
    broker: Mosquitto | None = None,
    *,
    models_dir: Path | None = None,
    sources: Sequence[str] = ("inbox",),
    **sections: Any,
) -> dict[str, Any]:
    """A complete config below `root`; keyword arguments replace (or, for dicts, update) sections."""
    cfg: dict[str, Any] = {
        "device_id": DEVICE,
        "state_dir": str(root / "state"),
        "sources": [source_entry(root, name) for name in sources],
        "engine": {"workers": 1, "threads": 0},
        "logging": {"level": "INFO"},
    }
    if models_dir is not None:
        cfg["engine"]["models_dir"] = str(models_dir)
    if broker is not None:
        cfg["mqtt"] = {
            "url": broker.url,
            "topic_prefix": PREFIX,
            "client_id": f"edge-ocr-{DEVICE}-{os.getpid()}",
            "keepalive": 10,
            "backoff_min_s": 0.2,
            "backoff_max_s": 1.0,
            "stats_interval_s": 0,
        }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def source_entry(root: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """One folder source: <root>/<name>/ with <root>/done/<name>/ and <root>/failed/<name>/."""
    entry: dict[str, Any] = {
        "name": name,
        "type": "folder",
        "path": str(root / name),
        "done_dir": str(root / "done" / name),
        "failed_dir": str(root / "failed" / name),
        "stable_s": 1.0,
        "rescan_s": 5,
    }
    entry.update(overrides)
    return entry


class DaemonProcess:
    """One `edge-ocr run` process; its stderr (logs) and stdout go to files in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = self.workdir / "config.yaml"
            self.write_config(config)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd or self.workdir
        self.wrapper = list(wrapper)
        self.log_path = self.workdir / "daemon.log"
        self.out_path = self.workdir / "daemon.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def write_config(self, config: dict[str, Any]) -> None:
        assert self.config_path is not None
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.config_path)

    def start(self) -> DaemonProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        cmd = [*self.wrapper, sys.executable, "-m", "edge_ocr", "run"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        with open(self.log_path, "ab") as err, open(self.out_path, "ab") as out:
            err.write(f"===== run {self.runs}: {' '.join(cmd)}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=self.cwd, env=self.env)
        return self

    def start_ready(self, timeout: float = 60.0) -> DaemonProcess:
        """Start and wait for the `ready` log line of this run."""
        self.start()
        assert self.wait_log(r"edge_ocr\.daemon: ready$", timeout), f"daemon not ready:\n{self.tail()}"
        return self

    # ------------------------------------------------------------------ logs and output

    def log(self, this_run_only: bool = True) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        if this_run_only:
            text = text.rsplit("===== run ", 1)[-1]
        return text

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log(this_run_only=False).splitlines()[-n:])

    def log_has(self, pattern: str) -> bool:
        return re.search(pattern, self.log(), re.MULTILINE) is not None

    def wait_log(self, pattern: str, timeout: float = 30.0) -> bool:
        def found() -> bool:
            if self.log_has(pattern):
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.tail()}")
            return False

        return wait_until(found, timeout, interval=0.1)

    def stdout_lines(self) -> list[str]:
        try:
            return [ln for ln in self.out_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return []

    # ------------------------------------------------------------------ signals

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: a crash or a power cut, as far as the daemon can tell."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"daemon did not stop within {timeout} s of SIGTERM:\n{self.tail()}"
            ) from None


class NotifySocket:
    """Binds a unix datagram socket and records every sd_notify datagram sent to it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-socket", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append(data.decode("utf-8", "replace"))
                self._cond.notify_all()

    def fields(self) -> list[tuple[str, str]]:
        """Every KEY=VALUE line received, in order."""
        with self._cond:
            msgs = list(self.messages)
        return [tuple(line.split("=", 1)) for m in msgs for line in m.splitlines() if "=" in line]  # type: ignore[misc]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0, count: int = 1) -> bool:
        def enough() -> bool:
            return sum(1 for k, v in self.fields() if k == key and (value is None or v == value)) >= count

        with self._cond:
            return self._cond.wait_for(enough, timeout)

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        self._thread.join(2)
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------- images and files


def line_crops(eval_data: Path, n: int) -> list[Path]:
    """The first `n` line crops of the English eval set (each 50-250 ms of OCR here)."""
    paths = sorted((eval_data / "lines_en" / "img").glob("*.png"))
    assert len(paths) >= n, f"only {len(paths)} line crops in {eval_data}"
    return paths[:n]


def tiny_png(text: str, width: int = 96, height: int = 32) -> bytes:
    """A small black-on-white PNG with `text`: fast to OCR, unique content for a unique text."""
    img = np.full((height, width), 255, np.uint8)
    cv2.putText(img, text, (4, height - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header (signature + IHDR) announcing width x height, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def drop(inbox: Path, name: str, data: bytes) -> Path:
    """Put a file into `inbox` atomically: write NAME.part (ignored by the daemon), then rename."""
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f"{name}.part"
    tmp.write_bytes(data)
    target = inbox / name
    os.replace(tmp, target)
    return target


def drop_copies(inbox: Path, files: Iterable[Path], prefix: str = "") -> list[str]:
    """Drop each of `files` under `prefix + its name`; returns the names."""
    names = []
    for path in files:
        name = prefix + path.name
        drop(inbox, name, path.read_bytes())
        names.append(name)
    return names


def names_in(folder: Path) -> set[str]:
    """File names in `folder` (no NAME.error.json, no hidden files)."""
    if not folder.is_dir():
        return set()
    return {
        p.name for p in folder.iterdir() if not p.name.endswith(".error.json") and not p.name.startswith(".")
    }


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET on loopback; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
