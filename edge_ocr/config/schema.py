"""The configuration schema, declared once: one frozen pydantic model per section.

Every model forbids unknown keys and describes every field (the JSON Schema that editors use is generated
from them: `edge-ocr config schema`). Ranges are constraints (ge/le); a rule about one value is a field
validator; a rule that involves several keys is a model validator. A validator that finds problems raises
one `config_rules` error listing each (key, message), so that loading reports every one at its own key and
line (see `load`).

Scalars are strict (`42` is not a string, `"5"` is not a number, `yes` in quotes is not a boolean):
YAML already types them, and a quoted number is more often a mistake than a wish. Relative paths are
resolved against the folder of the file (the validation context's ``base_dir``); ``~`` is expanded.

Adding a source type: write its model with a ``type: Literal["<name>"]`` field and add it to `SourceConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_ocr.config.base import (
    PASSWORD_KEYS,
    ConfigPath,
    Name,
    Rules,
    Section,
    _no_bool,
    _one_secret,
    default_device_id,
)
from edge_ocr.config.camera import (  # noqa: F401  (the camera's sections, re-exported: one schema)
    AlignmentConfig,
    CameraSource,
    EvidenceConfig,
    NumericConfig,
    RegionConfig,
    RegionHomeAssistant,
    TrainingConfig,
)
from edge_ocr.config.secrets import read_secret

# --------------------------------------------------------------------------------------------- sources


class FolderSource(Section):
    """A hot folder: files dropped into `path` are read, then moved to `done_dir` or `failed_dir`."""

    name: Name = Field(description="Source name; used in topics (`result/<name>`) and folder names.")
    type: Literal["folder"] = Field(description="Source type.")
    path: ConfigPath = Field(description="The inbox folder watched for new files.")
    done_dir: ConfigPath | None = Field(
        None, description="Where a processed file goes; default <state_dir>/done/<name>."
    )
    on_success: Literal["move", "delete"] = Field(
        "move", description="`move` to done_dir, or `delete` the file once its result is stored."
    )
    failed_dir: ConfigPath | None = Field(
        None, description="Where a failed file goes with NAME.error.json; default <state_dir>/failed/<name>."
    )
    recursive: StrictBool = Field(False, description="Also watch sub-folders.")
    include: tuple[StrictStr, ...] = Field(
        ("*",), description="Glob patterns (file name, case-insensitive) of files to take."
    )
    exclude: tuple[StrictStr, ...] = Field(
        (), description="Glob patterns of files to leave alone (hidden and temp files always are)."
    )
    poll: Literal["auto"] | StrictBool = Field(
        "auto", description="Poll instead of inotify: auto (poll on network file systems), true, false."
    )
    poll_interval_s: StrictFloat = Field(1.0, ge=0.05, le=3600, description="Polling period.")
    stable_s: StrictFloat = Field(
        2.0, ge=0, le=3600,
        description="A file not closed cleanly is taken once size and mtime are unchanged this long.",
    )  # fmt: skip
    settle_s: StrictFloat = Field(
        0.5, ge=0, le=3600,
        description="A closed or moved-in file is taken after this long without changes (copiers set "
        "times right after close).",
    )  # fmt: skip
    rescan_s: StrictFloat = Field(
        60.0, ge=0, description="Full rescan period to catch missed events; 0: off."
    )
    max_file_mb: StrictFloat = Field(64.0, ge=0.001, description="Larger files go to failed_dir unread.")
    duplicates: Literal["process", "skip", "republish"] = Field(
        "process",
        description="A file seen before (same sha256): process again, skip, or republish the stored result.",
    )

    def rules(self) -> Rules:
        """The rules between this section's keys."""
        rules = Rules()
        if self.on_success == "delete" and self.done_dir is not None:
            rules.add("done_dir", "done_dir is not used with `on_success: delete`; remove one of them")
        for key in ("done_dir", "failed_dir"):
            target = getattr(self, key)
            if target is None:
                continue
            if target == self.path:
                rules.add(key, f"must not be the inbox itself ({self.path})")
            elif self.recursive and target.is_relative_to(self.path):
                rules.add(key, "must not be inside the inbox when `recursive: true` (files would come back)")
        return rules


SourceConfig = Annotated[FolderSource | CameraSource, Field(discriminator="type")]
SOURCE_TYPES: dict[str, type[BaseModel]] = {"folder": FolderSource, "camera": CameraSource}


# --------------------------------------------------------------------------------------------- mqtt


class TlsConfig(Section):
    """TLS for `mqtts://`: the CA that signed the broker's certificate, and an optional client certificate."""

    ca_file: ConfigPath | None = Field(None, description="CA bundle (PEM); default: the system CAs.")
    cert_file: ConfigPath | None = Field(
        None, description="Client certificate (PEM), for brokers that require one."
    )
    key_file: ConfigPath | None = Field(
        None, description="Client private key (PEM); default: inside cert_file."
    )
    key_password_file: ConfigPath | None = Field(None, description="File holding the key passphrase.")
    key_password_env: StrictStr | None = Field(
        None, description="Environment variable holding the key passphrase."
    )
    key_password_credential: StrictStr | None = Field(
        None, description="systemd credential name ($CREDENTIALS_DIRECTORY/<name>) holding the passphrase."
    )
    check_hostname: StrictBool = Field(
        True, description="Verify the broker's host name against its certificate."
    )

    def rules(self) -> Rules:
        """The rules between this section's keys."""
        rules = Rules()
        _one_secret(rules, self, ("key_password_file", "key_password_env", "key_password_credential"), None)
        if self.key_file is not None and self.cert_file is None:
            rules.add("key_file", "key_file needs cert_file")
        return rules

    def read_key_password(self) -> str | None:
        """The key passphrase from its configured source, or None; raises ConfigError if it cannot be read."""
        return read_secret(
            "mqtt.tls.key_password",
            file=self.key_password_file,
            env=self.key_password_env,
            credential=self.key_password_credential,
        )


class HomeAssistantConfig(Section):
    """Home Assistant MQTT discovery."""

    enabled: StrictBool = Field(False, description="Publish retained discovery configs.")
    discovery_prefix: StrictStr = Field("homeassistant", description="Home Assistant's discovery prefix.")


class Secret:
    """Field marker: the value is replaced by `***` in `Config.redacted()`."""


class MqttConfig(Section):
    """The broker connection and topic layout."""

    url: StrictStr = Field(description="mqtt://host[:port] or mqtts://host[:port] (TLS).")
    topic_prefix: StrictStr = Field("edge-ocr", description="First topic level: <prefix>/<device_id>/...")
    client_id: StrictStr | None = Field(None, description="MQTT client id; default edge-ocr-<device_id>.")
    username: Annotated[StrictStr | None, Secret()] = Field(
        None, description="Login name (redacted in logs)."
    )
    password_file: ConfigPath | None = Field(None, description="File holding the password.")
    password_env: StrictStr | None = Field(None, description="Environment variable holding the password.")
    password_credential: StrictStr | None = Field(
        None, description="systemd credential name ($CREDENTIALS_DIRECTORY/<name>) holding the password."
    )
    keepalive: StrictInt = Field(
        60, ge=5, le=65535, description="Keepalive in seconds; the broker sends `offline` after 1.5x."
    )
    qos: Annotated[Literal[1, 2], BeforeValidator(_no_bool)] = Field(
        1, description="QoS of results (0 would lose them)."
    )
    retain_results: StrictBool = Field(False, description="Retain the last result per source on the broker.")
    max_inflight: StrictInt = Field(
        20, ge=1, le=1000, description="Results sent but not yet acknowledged, at most."
    )
    backoff_min_s: StrictFloat = Field(
        1.0, ge=0.1, description="First reconnect delay; doubles up to backoff_max_s."
    )
    backoff_max_s: StrictFloat = Field(60.0, ge=0.1, description="Longest reconnect delay.")
    stats_interval_s: StrictFloat = Field(60.0, ge=0, description="Period of the stats message; 0: off.")
    delivery: Literal["broker", "end_to_end"] = Field(
        "broker",
        description=(
            "When a result leaves the outbox. broker: at the broker's PUBACK. end_to_end: when the fleet's "
            "ingester names it as stored (retained on <topic_prefix>/ack/<device_id>); until then it is "
            "kept, counted as sent and not yet acknowledged, and published again after ack_timeout_s."
        ),
    )
    ack_timeout_s: StrictFloat = Field(
        300.0,
        ge=1,
        description="end_to_end: a result sent and not acknowledged for this long is sent again (same id).",
    )
    tls: TlsConfig | None = Field(None, description="TLS options (mqtts:// only).")
    home_assistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant discovery."
    )

    @model_validator(mode="after")
    def _rules(self) -> MqttConfig:
        rules = Rules()
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            rules.add("url", f"must start with mqtt:// or mqtts://, got {self.url!r}")
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            rules.add("url", f"bad port in {self.url!r}")
        if not parts.hostname:
            rules.add("url", f"no host in {self.url!r}")
        if parts.password is not None:
            rules.add(
                "url",
                "secrets are not accepted in the configuration file; put the password in mqtt.password_file",
            )
        elif parts.username is not None:
            rules.add("url", "put the user name in mqtt.username, not in the URL")
        if parts.path not in ("", "/") or parts.query:
            rules.add("url", f"unexpected path or query in {self.url!r}")
        if self.tls is not None and parts.scheme == "mqtt":
            rules.add("tls", "TLS options need an mqtts:// url")
        prefix = self.topic_prefix
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\0"):
            rules.add(
                "topic_prefix", f"{prefix!r} is not a topic prefix (no + or #, no leading or trailing /)"
            )
        credential = self.password_credential
        if credential is not None and ("/" in credential or credential in ("", ".", "..")):
            rules.add("password_credential", "a credential name is a plain file name")
        need = "a password needs a username (mqtt.username)" if self.username is None else None
        _one_secret(rules, self, PASSWORD_KEYS, need)
        if self.backoff_min_s > self.backoff_max_s:
            rules.add("backoff_min_s", "must not exceed backoff_max_s")
        if self.tls is not None:
            rules.extend(("tls",), self.tls.rules())
        rules.raise_any()
        return self

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.use_tls else 1883)

    def read_password(self) -> str | None:
        """The password from its configured source, or None; raises ConfigError if it cannot be read."""
        return read_secret(
            "mqtt.password",
            file=self.password_file,
            env=self.password_env,
            credential=self.password_credential,
        )


# --------------------------------------------------------------------------------------------- the rest


class OutboxConfig(Section):
    """Bounds of the durable outbox; when full, new files wait (back pressure), nothing is dropped."""

    max_messages: StrictInt = Field(10_000, ge=1, description="Messages waiting, at most.")
    max_bytes: StrictInt = Field(
        64 * 1024 * 1024, ge=1024, description="Bytes waiting (topic + payload), at most."
    )


class StorageConfig(Section):
    """The low-space guard: below the reserve, new files wait in the inbox and results keep flowing."""

    min_free_mb: StrictFloat = Field(
        64.0, ge=0,
        description="Free MiB to keep on the filesystems of state_dir, done_dir and failed_dir; 0: no guard.",
    )  # fmt: skip
    min_free_percent: StrictFloat = Field(
        5.0, ge=0, le=100,
        description="The same reserve as a share of each filesystem; the smaller of the two applies.",
    )  # fmt: skip
    check_interval_s: StrictFloat = Field(
        5.0, ge=0.1, le=3600, description="Seconds between two free-space checks."
    )

    def reserve_bytes(self, total_bytes: int) -> int:
        """The reserve on a filesystem of `total_bytes`: a small card keeps its 5%, a big disk its 64 MiB."""
        return int(min(self.min_free_mb * 1024 * 1024, total_bytes * self.min_free_percent / 100))


class HistoryConfig(Section):
    """Every published camera reading, kept in <state_dir>/history.sqlite3 for the page's charts and CSV.

    Best effort: the outbox comes first. History stops writing at twice the storage reserve, so a
    filling disk gives up the history before it holds readings back."""

    enabled: StrictBool = Field(True, description="Keep the history of camera readings.")
    retain_days: StrictFloat = Field(
        30.0, gt=0, le=3650, description="Readings older than this many days are deleted."
    )
    max_mb: StrictFloat = Field(
        50.0, ge=0.1, le=100_000,
        description="Size of the history database at most (MiB); the oldest readings go first.",
    )  # fmt: skip


class EngineConfig(Section):
    """The OCR engine."""

    workers: StrictInt = Field(1, ge=1, le=64, description="OCR worker threads.")
    threads: StrictInt = Field(
        0, ge=0, le=256, description="onnxruntime intra-op threads per worker; 0: its default."
    )
    max_pixels: StrictInt = Field(40_000_000, ge=1, description="Larger images are refused before decoding.")
    use_cls: StrictBool = Field(True, description="Run the 0/180 degree direction classifier.")
    page_orientation: StrictBool = Field(
        True,
        description="Turn pages (folder, API, CLI page mode) upright first when the orientation model names "
        "their turn (0/90/180/270) confidently; camera regions and lines are never turned.",
    )
    orientation_min_confidence: StrictFloat = Field(
        0.75, ge=0.0, le=1.0, description="A page orientation verdict below this leaves the page as it is."
    )
    precision: Literal["auto", "int8", "fp32"] = Field(
        "auto",
        description="auto: INT8 for a model only where it passed the build's accuracy gate and runs >= 1.1x "
        "faster on this CPU (measured at the first start, then cached); int8 or fp32 force it.",
    )
    model_set: Literal["ppocrv6-small", "ppocrv6-tiny", "ppocrv4-mobile"] | None = Field(
        None,
        description="Model set: ppocrv6-small (the default: most accurate), ppocrv6-tiny (the speed tier "
        "for small devices) or ppocrv4-mobile (the previous generation).",
    )
    models_dir: ConfigPath | None = Field(
        None, description="Folder with manifest.yaml; default: the installed models."
    )


class HttpConfig(Section):
    """The HTTP server: /healthz and /metrics; with `api`, POST /api/ocr, the watch API and the web page."""

    enabled: StrictBool = Field(False, description="Serve /healthz and /metrics.")
    host: StrictStr = Field(
        "127.0.0.1", description="Listen address; any other than loopback needs a token (token_*)."
    )
    port: StrictInt = Field(9464, ge=1, le=65535, description="Listen port.")
    api: StrictBool = Field(
        False,
        description="Also serve POST /api/ocr, the watch API and the web page at / (edge-ocr serve: always).",
    )
    token_file: ConfigPath | None = Field(
        None, description="File holding the bearer token clients send (Authorization: Bearer ...)."
    )
    token_env: StrictStr | None = Field(None, description="Environment variable holding the bearer token.")
    token_credential: StrictStr | None = Field(
        None, description="systemd credential ($CREDENTIALS_DIRECTORY/<name>) holding the bearer token."
    )
    cors_origins: tuple[StrictStr, ...] = Field(
        (), description="Origins allowed to call the API from a browser (CORS); empty: none."
    )
    tls_cert: ConfigPath | None = Field(None, description="TLS certificate (PEM); with tls_key: HTTPS.")
    tls_key: ConfigPath | None = Field(None, description="TLS private key (PEM, unencrypted).")
    max_body_mb: StrictFloat = Field(
        20.0, gt=0, le=1024, description="Largest request body; larger: 413, refused before it is read."
    )
    max_pixels: StrictInt | None = Field(
        None, ge=1, description="Largest image the API decodes; default: engine.max_pixels."
    )
    queue_size: StrictInt = Field(
        4, ge=0, le=1000, description="API requests waiting beyond those running; more: 429 with Retry-After."
    )
    api_workers: StrictInt = Field(
        1, ge=1, le=64,
        description="API requests decoded and read at once (each takes its turn at the engine).",
    )
    deadline_s: StrictFloat = Field(
        30.0, gt=0, le=3600, description="Seconds from a request's arrival to its answer; past it: 504."
    )
    cache_entries: StrictInt = Field(
        128, ge=0, description="Results kept by content hash and options (LRU); 0: no cache."
    )

    @model_validator(mode="after")
    def _rules(self) -> HttpConfig:
        rules = Rules()
        _one_secret(rules, self, ("token_file", "token_env", "token_credential"), None)
        if (self.tls_cert is None) != (self.tls_key is None):
            rules.add("tls_key" if self.tls_key is None else "tls_cert", "tls_cert and tls_key go together")
        rules.raise_any()
        return self


class LoggingConfig(Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line each (under systemd journald adds its own fields); json: one "
        "object a line (ts, level, logger, msg, and source/file/id/region/reason where a line has them) "
        "for log collectors. Secrets are redacted in both.",
    )


def _schema_for_run(schema: dict[str, Any]) -> None:
    """The JSON Schema that editors read describes a config for `edge-ocr run`, the common case: there
    at least one source is required (`edge-ocr serve`'s loader alone accepts none)."""
    schema["required"] = [*schema.get("required", []), "sources"]
    sources = schema["properties"]["sources"]
    sources.pop("default", None)
    sources["minItems"] = 1


class Config(Section):
    """The edge-ocr configuration. Paths are absolute after loading."""

    model_config = ConfigDict(title="edge-ocr configuration", json_schema_extra=_schema_for_run)

    state_dir: ConfigPath = Field(
        description="Outbox, bookkeeping and the optimized-graph cache (graphs/) live here."
    )
    sources: tuple[SourceConfig, ...] = Field(
        default=(), description="Image sources: `edge-ocr run` needs at least one, `edge-ocr serve` none."
    )
    device_id: Name = Field(
        default_factory=default_device_id, description="Topic level naming this device; default hostname."
    )
    mqtt: MqttConfig | None = Field(
        None, description="Broker; null: results go to stdout and stay in the outbox."
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Outbox bounds.")
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="Free space kept on the folders written to."
    )
    history: HistoryConfig = Field(
        default_factory=HistoryConfig, description="History of camera readings (charts, CSV)."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="OCR engine.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Local HTTP.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")

    @field_validator("sources")
    @classmethod
    def _sources(cls, sources: tuple[FolderSource | CameraSource, ...]) -> tuple[Any, ...]:
        rules = Rules()
        names: dict[str, int] = {}
        inboxes: dict[Path, int] = {}
        for i, src in enumerate(sources):
            if isinstance(src, FolderSource):
                if src.path in inboxes:
                    rules.add(
                        (i, src.type, "path"), f"sources[{inboxes[src.path]}] already watches {src.path}"
                    )
                inboxes.setdefault(src.path, i)
            if src.name in names:
                rules.add((i, src.type, "name"), f"duplicate source name (also sources[{names[src.name]}])")
            names.setdefault(src.name, i)
            rules.extend((i, src.type), src.rules())  # located like pydantic does
        rules.raise_any()
        return sources

    @model_validator(mode="after")
    def _a_source_to_run(self, info: ValidationInfo) -> Config:
        """`edge-ocr run` needs a source; `edge-ocr serve` (validated with sources_required False) none."""
        if not self.sources and (info.context or {}).get("sources_required", True):
            rules = Rules()
            rules.add("sources", "`edge-ocr run` needs at least one source (`edge-ocr serve` runs without)")
            rules.raise_any()
        return self

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @property
    def history_path(self) -> Path:
        return self.state_dir / "history.sqlite3"

    def with_derived_defaults(self) -> Config:
        """Fill the defaults that depend on other keys (done/failed/evidence folders, the client id)."""
        sources: list[FolderSource | CameraSource] = []
        for src in self.sources:
            if isinstance(src, FolderSource):
                done = src.done_dir
                if done is None and src.on_success == "move":
                    done = self.state_dir / "done" / src.name
                failed = src.failed_dir or self.state_dir / "failed" / src.name
                src = src.model_copy(update={"done_dir": done, "failed_dir": failed})
            elif src.evidence is not None and src.evidence.dir is None:
                evidence = src.evidence.model_copy(update={"dir": self.state_dir / "evidence" / src.name})
                src = src.model_copy(update={"evidence": evidence})
            sources.append(src)
        mqtt = self.mqtt
        if mqtt is not None and mqtt.client_id is None:
            mqtt = mqtt.model_copy(update={"client_id": f"edge-ocr-{self.device_id}"})
        return self.model_copy(update={"sources": tuple(sources), "mqtt": mqtt})

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Plain data (paths as strings, tuples as lists), secrets masked unless `redact` is False."""
        data = self.model_dump(mode="json")
        if redact:
            _redact(self, data)
        return data

    def redacted(self) -> dict[str, Any]:
        """What to log: `to_dict(redact=True)`."""
        return self.to_dict(redact=True)


REDACTED = "***"


def _redact(model: BaseModel, data: dict[str, Any]) -> None:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is not None and any(isinstance(m, Secret) for m in info.metadata):
            data[name] = REDACTED
        elif isinstance(value, BaseModel):
            _redact(value, data[name])
        elif isinstance(value, tuple):
            for item, sub in zip(value, data[name], strict=True):
                if isinstance(item, BaseModel):
                    _redact(item, sub)
