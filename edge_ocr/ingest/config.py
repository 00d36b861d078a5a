"""The ingester's settings: declared once, typed, every field described, unknown keys refused.

They come from flags alone (`edge-ocr ingest --mqtt URL --dsn DSN`), or from a YAML file (`--config`,
the same key names) under systemd, with flags overriding the file. Secrets are not written here: the
DSN's password comes from libpq's own sources (PGPASSWORD, ~/.pgpass, PGPASSFILE), so a password in
the DSN is refused, like the daemon refuses one in its broker URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import Field, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from edge_ocr.config.base import Rules, Section
from edge_ocr.errors import ConfigError

__all__ = ["IngestConfig", "load_ingest_config"]


class IngestConfig(Section):
    """Where results come from, where they go, and how the ingester reports."""

    mqtt: StrictStr = Field(description="The broker: mqtt://host[:port] (the core, or a site broker).")
    dsn: StrictStr = Field(
        description="PostgreSQL: postgresql://user@host:port/db (password from PGPASSWORD or ~/.pgpass)."
    )
    topic_prefix: StrictStr = Field("edge-ocr", description="The devices' mqtt.topic_prefix.")
    client_id: StrictStr = Field(
        "edge-ocr-ingest",
        description="MQTT client id; its persistent session is kept across restarts, so give each "
        "ingester its own.",
    )
    share_group: StrictStr | None = Field(
        "ingest",
        description="Shared-subscription group ($share/<group>/...) so several ingesters split the "
        "results; none: every ingester gets every result (duplicates are absorbed).",
    )
    http: StrictStr | None = Field(
        "127.0.0.1:9108", description="host:port of /healthz and /metrics; none: off."
    )
    batch_max: StrictInt = Field(500, ge=1, le=10_000, description="Results per transaction, at most.")
    batch_wait_s: StrictFloat = Field(
        0.05, ge=0, le=5, description="How long a batch waits to fill before it is committed."
    )
    keepalive: StrictInt = Field(30, ge=5, le=65535, description="MQTT keepalive in seconds.")
    unreachable_after_s: StrictFloat = Field(
        180.0,
        ge=1,
        description="A device whose status is online but not heard from (a result, its stats) for this "
        "long shows as unreachable in edge_ocr_device_view; about 3x the devices' mqtt.stats_interval_s.",
    )

    @model_validator(mode="after")
    def _rules(self) -> IngestConfig:
        rules = Rules()
        parts = urlsplit(self.mqtt)
        if parts.scheme != "mqtt" or not parts.hostname:
            rules.add("mqtt", f"expected mqtt://host[:port], got {self.mqtt!r}")
        dsn = urlsplit(self.dsn)
        if dsn.scheme not in ("postgresql", "postgres"):
            rules.add("dsn", f"expected postgresql://..., got {dsn.scheme or self.dsn!r}")
        elif dsn.password is not None:
            rules.add("dsn", "no password in the DSN; use PGPASSWORD, PGPASSFILE or ~/.pgpass")
        if self.share_group is not None and any(c in self.share_group for c in "+#/"):
            rules.add("share_group", "a group name has no + # or /")
        if self.http is not None and not _host_port(self.http):
            rules.add("http", f"expected host:port, got {self.http!r}")
        rules.raise_any()
        return self

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt).hostname or ""

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt).port or 1883

    @property
    def http_address(self) -> tuple[str, int] | None:
        return _host_port(self.http) if self.http else None


def _host_port(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def load_ingest_config(path: Path | None, overrides: dict[str, Any]) -> IngestConfig:
    """The settings from `path` (YAML) with `overrides` (only the flags that were given) on top."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        data.update(loaded)
    data.update(overrides)
    try:
        return IngestConfig.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path is not None else ""
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"{where}{problems}", remedy="see `edge-ocr ingest --help` for the flags and their keys"
        ) from exc
