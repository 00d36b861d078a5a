"""A TCP proxy on loopback whose link can be cut and restored: a bridge between brokers losing its
network for a while, in tests and the fleet benchmark. Development tooling; the runtime never imports it.

`cut()` closes every open connection and refuses new ones (the listening socket stays bound, connections
are accepted and closed at once, like a peer that resets); `restore()` lets them through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from edge_ocr.bench.devbroker import HOST, free_port

__all__ = ["TcpProxy", "Uplink"]


class TcpProxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target`; one thread per direction of each connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server = socket.create_server((HOST, self.port))
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection((HOST, self.target), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> None:
        """The link goes down: open connections are reset, new ones refused."""
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._server.close()
        self._thread.join(2)


class Uplink:
    """A site's network link to a clustered core: one TcpProxy per core node, cut and restored together.
    (A proxy to one node only is no cut: a bridge that lists every node moves to the next one.)"""

    def __init__(self, targets: list[int]) -> None:
        self.proxies = [TcpProxy(t) for t in targets]

    @property
    def ports(self) -> list[int]:
        return [p.port for p in self.proxies]

    def cut(self) -> None:
        for p in self.proxies:
            p.cut()

    def restore(self) -> None:
        for p in self.proxies:
            p.restore()

    def close(self) -> None:
        for p in self.proxies:
            p.close()
