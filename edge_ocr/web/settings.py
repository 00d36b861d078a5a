"""What the web layer needs from the config's `http:` section, and the exposure rule.

`ApiSettings.from_config` reads the section with defaults for every key, so the web layer does not
depend on which keys a given config version declares. The bearer token is read here, from a file, an
environment variable or a systemd credential, never from the YAML.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ocr.config import read_secret
from edge_ocr.errors import ConfigError


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 9464
    api: bool = True  # POST /api/ocr, the watch API and the page (off: /healthz and /metrics only)
    token: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    queue_size: int = 4  # API requests admitted beyond those running; more: 429
    workers: int = 1  # API requests decoded and run at once (each still takes an engine slot)
    deadline_s: float = 30.0  # from arrival to answer; past it: 504
    cache_entries: int = 128  # 0: no result cache
    device_id: str = "edge-ocr"

    @classmethod
    def from_config(cls, cfg: Any) -> ApiSettings:
        """From a loaded `Config`; raises ConfigError when the token cannot be read or is required."""
        http = cfg.http

        def get(key: str, default: Any) -> Any:
            value = getattr(http, key, None)
            return default if value is None else value

        token = read_secret(
            "http.token",
            file=getattr(http, "token_file", None),
            env=getattr(http, "token_env", None),
            credential=getattr(http, "token_credential", None),
        )
        s = cls(
            host=http.host,
            port=http.port,
            api=bool(get("api", True)),
            token=token or None,
            cors_origins=tuple(get("cors_origins", ())),
            tls_cert=get("tls_cert", None),
            tls_key=get("tls_key", None),
            max_body_bytes=int(float(get("max_body_mb", 20)) * 1024 * 1024),
            max_pixels=int(get("max_pixels", cfg.engine.max_pixels)),
            queue_size=int(get("queue_size", 4)),
            workers=int(get("api_workers", 1)),
            deadline_s=float(get("deadline_s", 30.0)),
            cache_entries=int(get("cache_entries", 128)),
            device_id=cfg.device_id,
        )
        s.check_exposure()
        return s

    def check_exposure(self) -> None:
        """Loopback needs nothing; any other address needs a token (the API reads images for anyone)."""
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"http.host is {self.host!r}, which is not loopback, and no token is set",
                remedy="set http.token_file, http.token_env or http.token_credential (clients then send "
                "`Authorization: Bearer <token>`), or keep http.host on 127.0.0.1",
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("http.tls_cert and http.tls_key go together", remedy="set both or neither")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything
