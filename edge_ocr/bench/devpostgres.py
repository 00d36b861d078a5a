"""A real, throw-away PostgreSQL cluster on loopback for tests and benchmarks (initdb + pg_ctl).

Development tooling, like `devbroker`: the ingester never imports it. The cluster lives in a fresh
directory under the system temp folder, listens on 127.0.0.1 at a free port with ``trust`` auth, and
is removed by `stop()`. PostgreSQL refuses to run as root, so as root every command runs as the
``postgres`` user (runuser) and the directory belongs to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge_ocr.bench.devbroker import HOST, free_port

__all__ = ["Postgres", "postgres_bin"]


def postgres_bin() -> Path | None:
    """Debian's server binaries (/usr/lib/postgresql/<major>/bin), the newest; None if not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Postgres:
    """One cluster: `start()`, `dsn`, `kill()` (SIGKILL-like immediate stop), `stop()` (and remove)."""

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="edge-ocr-pg-"))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.user = "postgres" if self._as else pwd.getpwuid(os.getuid()).pw_name

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> Postgres:
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                      "--no-sync", "-E", "UTF8")  # fmt: skip
        opts = (
            f"-c listen_addresses={HOST} -c port={self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=on -c full_page_writes=off"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w", "-t", "30",
                  "-l", str(self.root / "log"), "start")  # fmt: skip
        return self

    def kill(self) -> None:
        """An immediate stop (no checkpoint), like a crash."""
        self._ctl("immediate")

    def _ctl(self, mode: str) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                capture_output=True, cwd=self.root,
            )  # fmt: skip

    def stop(self) -> None:
        self._ctl("fast")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return (self.root / "log").read_text(errors="replace")
        except OSError:
            return ""
