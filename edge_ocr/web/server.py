"""uvicorn in a thread of its own, owned by the daemon (or by `edge-ocr serve`), with a clean stop.

The socket is bound in `start()`, on the caller's thread, so a port in use or a refused address is an
error at start (not a log line from a thread), and port 0 gives the port actually bound.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from edge_ocr.errors import ConfigError
from edge_ocr.web.app import create_app
from edge_ocr.web.context import WebContext

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, ctx: WebContext) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.app = create_app(ctx)
        ssl: dict[str, Any] = {}
        if s.tls_cert is not None and s.tls_key is not None:
            ssl = {"ssl_certfile": str(s.tls_cert), "ssl_keyfile": str(s.tls_key)}
        self._config = uvicorn.Config(
            self.app,
            host=s.host,
            port=s.port,
            log_config=None,  # ours (the daemon's logging), not uvicorn's dictConfig
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=5,
            # Bounds open connections (and so memory) under a burst; beyond it uvicorn answers 503.
            limit_concurrency=64,
            h11_max_incomplete_event_size=64 * 1024,
            **ssl,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.port = s.port

    @property
    def scheme(self) -> str:
        return "https" if self._config.ssl_certfile else "http"

    def start(self) -> None:
        try:
            self._config.load()
            sock = self._config.bind_socket()
        except (OSError, SystemExit) as exc:
            s = self.ctx.settings
            raise ConfigError(f"http: cannot listen on {s.host}:{s.port}: {exc}",
                              remedy="choose another http.port or stop what uses it") from exc  # fmt: skip
        self.port = sock.getsockname()[1]
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Accepted connections inherit it: a JSON answer goes out in two writes (head, body), and
            # with Nagle the second waits for the client's delayed ACK, ~40 ms per keep-alive request.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="http",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise ConfigError(f"http: the server did not start on {self.ctx.settings.host}:{self.port}")
        log.info("http: serving %s on %s://%s:%d", "the API, the page, /healthz and /metrics"
                 if self.ctx.settings.api else "/healthz and /metrics", self.scheme,
                 self.ctx.settings.host, self.port)  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(2)
        self.app.state.ocr.close()
