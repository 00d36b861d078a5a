"""Optional local HTTP endpoint: `/healthz` (200 only when the pipeline is healthy and not degraded,
else 503 with the reason in the JSON body) and `/metrics` (Prometheus text format). Bound to loopback
by default; it exposes no control, only state."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
MetricsFn = Callable[[], str]


class HttpServer:
    """Owns one ThreadingHTTPServer thread; `stop()` shuts it down and joins."""

    def __init__(self, host: str, port: int, health: HealthFn, metrics: MetricsFn) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] == "/healthz":
                    ok, detail = health()
                    body = json.dumps(detail, default=str).encode()
                    self._reply(200 if ok else 503, "application/json", body)
                elif self.path.split("?")[0] == "/metrics":
                    self._reply(200, "text/plain; version=0.0.4", metrics().encode())
                else:
                    self._reply(404, "text/plain", b"not found\n")

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http: " + fmt, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("http: serving /healthz and /metrics on %s:%d", *self._server.server_address[:2])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# One value, or one value per extra label set (e.g. one per folder: [({"folder": "state"}, 1.0)]).
MetricValue = float | list[tuple[dict[str, str], float]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(metrics: dict[str, tuple[str, str, MetricValue]], labels: dict[str, str] | None = None) -> str:
    """Render {name: (type, help, value)} as Prometheus text exposition; `labels` go on every sample."""
    out = []
    for name, (mtype, help_text, value) in metrics.items():
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {mtype}"]
        samples = value if isinstance(value, list) else [({}, value)]
        for extra, v in samples:
            merged = {**(labels or {}), **extra}
            label = ""
            if merged:
                label = "{" + ",".join(f'{k}="{_escape(str(x))}"' for k, x in sorted(merged.items())) + "}"
            out.append(f"{name}{label} {v}")
    return "\n".join(out) + "\n"
