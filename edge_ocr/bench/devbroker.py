"""A real, throw-away mosquitto on loopback for tests and benchmarks: start on an ephemeral 127.0.0.1 port,
kill, restart on the same port. Development tooling: the daemon never imports it.

Reusable by any test (the fixtures in conftest.py wrap it):

- `Mosquitto(workdir, users=..., tls=...)`: `start()` writes a config file into `workdir`, starts the
  broker and waits until the port accepts connections; `kill()` sends SIGKILL (a crash); `restart()`
  starts it again on the same port. Persistence is on and saved at every change, so a subscriber's
  session (clean_session=False) and its queued QoS 1 messages survive a kill.
- `make_tls(dir)`: a throw-away CA, a server certificate for 127.0.0.1/localhost, and a client
  certificate whose key is encrypted with `TlsFiles.client_key_password`, made with the openssl CLI.
- `Subscriber`: a paho client that records every message and waits on conditions with a timeout.

Loopback only; nothing here sleeps to assert a timing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port that is free now and stays free until a server we start binds it.

    A port the kernel hands out for bind(0) comes from the ephemeral range, which is also where the
    source ports of outgoing connections come from: a cluster node dialling its routes took a port
    chosen for another node's listener before that node bound it (CI, 2026-12-05). So ports come from
    below that range, where no outgoing connection is given one, and none is handed out twice."""
    low = _ephemeral_low()
    pick = random.Random()
    for _ in range(200):
        port = pick.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # an unusual port range: the kernel's choice, as before
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout`; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)


def password_line(user: str, password: str) -> str:
    """A mosquitto 2 password file line (PBKDF2-SHA512, 101 rounds), as `mosquitto_passwd` writes it."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with client_key_password
    client_key_password: str = "key-secret"


def make_tls(directory: Path) -> TlsFiles:
    """Generate a CA, a server cert (SAN 127.0.0.1, localhost) and a client cert with the openssl CLI."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        *ec,
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=edge-ocr test CA",
    )
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", *ec, "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
    run(
        "req", *ec, "-keyout", "client.key", "-passout", f"pass:{files.client_key_password}",
        "-out", "client.csr", "-subj", "/CN=edge-ocr-client",
    )  # fmt: skip
    run(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2",
    )  # fmt: skip
    return files


class Mosquitto:
    """One mosquitto process bound to 127.0.0.1:`port`, configured by a file in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        save_every_change: bool = True,
        extra_conf: Sequence[str] = (),
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users = dict(users or {})
        self.tls = tls
        self.require_certificate = require_certificate
        # False: mosquitto's own defaults (a snapshot every 30 min), what a site broker runs: a kill -9
        # then loses what it acknowledged since (mosquitto #1855), which the fleet tests need to show.
        self.save_every_change = save_every_change
        self.extra_conf = list(extra_conf)  # e.g. a bridge's `connection` section, written last
        self.conf = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{HOST}:{self.port}"

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # as root, mosquitto would drop to `mosquitto`
            "persistence true",
            f"persistence_location {self.workdir}/",
            *(["autosave_on_changes true", "autosave_interval 1"] if self.save_every_change else []),
            "log_type all",
            "connection_messages true",
        ]
        if self.users:
            pw = self.workdir / "passwd"
            pw.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        lines += self.extra_conf
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._write_conf()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        if not wait_until(self._accepts, timeout):
            self.kill()
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log_text()[-3000:]}")
        return self

    def _accepts(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited:\n{self.log_text()[-3000:]}")
        try:
            with socket.create_connection((HOST, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, like a crash or a power cut of the broker host."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """A clean stop (SIGTERM): mosquitto saves its state and closes connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 10.0) -> Mosquitto:
        """Start again on the same port (after `kill` or `stop`)."""
        self.kill()
        deadline = time.monotonic() + timeout
        while True:  # the port may linger for a moment after a kill
            try:
                return self.start(timeout=max(0.5, deadline - time.monotonic()))
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client_tls_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        if self.require_certificate:
            ctx.load_cert_chain(
                str(self.tls.client_cert), str(self.tls.client_key), password=self.tls.client_key_password
            )
        return ctx


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float = field(default_factory=time.monotonic, compare=False)  # arrival, for latency figures


class Subscriber:
    """A test MQTT client recording what it receives; `clean=False` keeps its session across a kill."""

    def __init__(
        self,
        broker: Mosquitto,
        topics: Iterable[str],
        *,
        client_id: str | None = None,
        clean: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.topics = list(topics)
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
            clean_session=clean,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        ctx = broker.client_tls_context()
        if ctx is not None:
            self.client.tls_set_context(ctx)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.client.connect_async(HOST, broker.port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise RuntimeError("test subscriber could not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.on(topic)]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 15.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
