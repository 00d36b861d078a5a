"""systemd service notifications (READY=1, STATUS=, WATCHDOG=1, STOPPING=1).

Uses systemd-python where it is installed, the raw `$NOTIFY_SOCKET` datagram protocol otherwise (it is
one sendto; containers and minimal images rarely have libsystemd). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _raw_send(message: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":  # abstract namespace socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", addr, exc)
        return False


def _sender():
    try:
        from systemd import daemon  # type: ignore[import-not-found]

        return lambda message: bool(daemon.notify(message))
    except ImportError:
        return _raw_send


class Notifier:
    """One object per process; `enabled` tells whether systemd is listening."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._send = _sender() if self.enabled else None

    def notify(self, **fields: str | int) -> None:
        if not self._send:
            return
        self._send("\n".join(f"{k.upper()}={v}" for k, v in fields.items()))

    def ready(self, status: str) -> None:
        self.notify(ready=1, status=status)

    def status(self, status: str) -> None:
        self.notify(status=status)

    def watchdog(self) -> None:
        self.notify(watchdog=1)

    def stopping(self, status: str = "stopping") -> None:
        self.notify(stopping=1, status=status)

    def reloading(self) -> None:
        self.notify(reloading=1)


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec (from $WATCHDOG_USEC, if meant for this pid), else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
