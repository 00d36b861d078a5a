"""A throw-away 3-node NATS cluster (JetStream, its MQTT gateway) on loopback, for tests and benchmarks.

Development tooling like `devbroker`: the runtime never imports it. Each node has its own client, route
and MQTT port on 127.0.0.1 and its own JetStream folder; `kill(i)` is a SIGKILL, `restart(i)` starts the
node again on its data. NATS keeps MQTT sessions, QoS 1 messages and retained messages in JetStream
streams replicated across the nodes, so a client may come back through any node.

What NATS 2.9's MQTT gateway does not do, found here: ``$share/`` subscriptions are granted but are a
literal filter that matches nothing (run ingesters with ``share_group: none``); subscribing takes about
two seconds while it creates its JetStream consumers.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from edge_ocr.bench.devbroker import HOST, free_port, wait_until

__all__ = ["NatsCluster", "nats_binary"]


def nats_binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


def _ports(n: int) -> list[int]:
    found: set[int] = set()
    while len(found) < n:
        found.add(free_port())
    return sorted(found)


class NatsCluster:
    """`size` nodes named n0.. in one cluster; `mqtt_ports[i]` is node i's MQTT listener."""

    def __init__(self, size: int = 3, workdir: Path | None = None) -> None:
        binary = nats_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.binary = binary
        self.size = size
        self.root = Path(workdir or tempfile.mkdtemp(prefix="edge-ocr-nats-"))
        self.root.mkdir(parents=True, exist_ok=True)
        ports = _ports(3 * size)
        self.client_ports, self.route_ports, self.mqtt_ports = (
            ports[:size],
            ports[size : 2 * size],
            ports[2 * size :],
        )
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    def url(self, i: int) -> str:
        return f"mqtt://{HOST}:{self.mqtt_ports[i]}"

    def _conf(self, i: int) -> Path:
        d = self.root / f"n{i}"
        d.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats-route://{HOST}:{p}" for j, p in enumerate(self.route_ports) if j != i)
        conf = d / "nats.conf"
        conf.write_text(
            f"server_name: n{i}\nlisten: {HOST}:{self.client_ports[i]}\n"
            f'jetstream {{ store_dir: "{d}", max_memory_store: 64MB, max_file_store: 1GB }}\n'
            f"cluster {{ name: core, listen: {HOST}:{self.route_ports[i]}, routes: [{routes}] }}\n"
            f"mqtt {{ listen: {HOST}:{self.mqtt_ports[i]} }}\n"
        )
        return conf

    def start_node(self, i: int) -> None:
        with open(self.root / f"n{i}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [self.binary, "-c", str(self._conf(i))], stdout=log, stderr=subprocess.STDOUT
            )

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for i in range(self.size):
            self.start_node(i)
        if not wait_until(lambda: all(self._accepts(i) for i in range(self.size)), timeout):
            raise RuntimeError(f"the NATS cluster did not start:\n{self.log_text()[-3000:]}")
        return self

    def _accepts(self, i: int) -> bool:
        try:
            with socket.create_connection((HOST, self.mqtt_ports[i]), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        self.kill(i)
        self.start_node(i)
        if not wait_until(lambda: self._accepts(i), timeout):
            raise RuntimeError(f"node n{i} did not come back:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        for i in range(self.size):
            self.kill(i)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("n*.log")))
