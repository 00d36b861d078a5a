"""The configuration: its YAML schema, declared once, its validation, and loading.

The schema is the frozen dataclasses below, one per section. `load_config` composes the YAML into nodes
(which keep their line numbers), walks the nodes against the dataclasses and collects every problem:
unknown keys (with a "did you mean"), wrong types, missing required keys, values out of range and
rules that involve several keys. Each problem names the file, the key path (``sources[0].path``) and
the line; all of them are raised together as one `ConfigFileError` (a `ConfigError`).

Decisions a reader should know:

- Relative paths in a file are resolved against the directory of that file (not the working
  directory), so a unit file and a shell see the same folders; ``~`` is expanded.
- A source's ``done_dir`` and ``failed_dir`` default to ``<state_dir>/done/<name>`` and
  ``<state_dir>/failed/<name>``: one rule that works for any number of sources. After loading both are
  always set, except ``done_dir`` with ``on_success: delete``.
- Secrets never live in the YAML: ``password:`` is rejected with a message saying where to put it.
  The password (and the TLS key passphrase) comes from a file, an environment variable or a systemd
  credential, and is read only when needed (`MqttConfig.read_password`), so a fleet config can be
  validated on a laptop that has none of the secrets.
- With no file, `default_config` is used: watch ``./inbox``, state in ``./var`` (done and failed
  under ``./var/done/inbox`` and ``./var/failed/inbox``), no broker (results go to stdout and stay in the
  outbox).

Adding a source type (the camera, issue 4): write its dataclass with a ``type: Literal["camera"]``
field, add it to `SOURCE_TYPES` and to the `SourceConfig` union, and drop it from `PLANNED_SOURCE_TYPES`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import socket
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union
from urllib.parse import urlsplit

import yaml

from edge_ocr.errors import ConfigError

__all__ = [
    "Config",
    "ConfigFileError",
    "ConfigProblem",
    "EngineConfig",
    "CameraSource",
    "EvidenceConfig",
    "FolderSource",
    "RegionConfig",
    "HomeAssistantConfig",
    "HttpConfig",
    "LoggingConfig",
    "MqttConfig",
    "OutboxConfig",
    "SourceConfig",
    "StorageConfig",
    "TlsConfig",
    "default_config",
    "default_device_id",
    "load_config",
    "parse_config",
    "read_secret",
    "validate_file",
]

REDACTED = "***"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _meta(doc: str, *, min: float | None = None, max: float | None = None, secret: bool = False) -> dict:
    """Field metadata: a description, an allowed range, and whether the value is redacted in logs."""
    return {"doc": doc, "min": min, "max": max, "secret": secret}


def default_device_id() -> str:
    """The host name, made safe for an MQTT topic level."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-.")
    return name or "edge-ocr"


# --------------------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class FolderSource:
    """A hot folder: files dropped into `path` are read, then moved to `done_dir` or `failed_dir`."""

    name: str = field(metadata=_meta("Source name; used in topics (`result/<name>`) and folder names."))
    type: Literal["folder"] = field(metadata=_meta("Source type."))
    path: Path = field(metadata=_meta("The inbox folder watched for new files."))
    done_dir: Path | None = field(
        default=None, metadata=_meta("Where a processed file goes; default <state_dir>/done/<name>.")
    )
    on_success: Literal["move", "delete"] = field(
        default="move", metadata=_meta("`move` to done_dir, or `delete` the file once its result is stored.")
    )
    failed_dir: Path | None = field(
        default=None,
        metadata=_meta("Where a failed file goes with NAME.error.json; default <state_dir>/failed/<name>."),
    )
    recursive: bool = field(default=False, metadata=_meta("Also watch sub-folders."))
    include: tuple[str, ...] = field(
        default=("*",), metadata=_meta("Glob patterns (file name, case-insensitive) of files to take.")
    )
    exclude: tuple[str, ...] = field(
        default=(),
        metadata=_meta("Glob patterns of files to leave alone (hidden and temp files always are)."),
    )
    poll: Literal["auto"] | bool = field(
        default="auto",
        metadata=_meta("Poll instead of inotify: auto (poll on network file systems), true, false."),
    )
    poll_interval_s: float = field(default=1.0, metadata=_meta("Polling period.", min=0.05, max=3600))
    stable_s: float = field(
        default=2.0,
        metadata=_meta(
            "A file not closed cleanly is taken once size and mtime are unchanged this long.", min=0, max=3600
        ),
    )
    settle_s: float = field(
        default=0.5,
        metadata=_meta(
            "A closed or moved-in file is taken after this long without changes (copiers set times "
            "right after close).",
            min=0,
            max=3600,
        ),
    )
    rescan_s: float = field(
        default=60.0, metadata=_meta("Full rescan period to catch missed events; 0: off.", min=0)
    )
    max_file_mb: float = field(
        default=64.0, metadata=_meta("Larger files go to failed_dir unread.", min=0.001)
    )
    duplicates: Literal["process", "skip", "republish"] = field(
        default="process",
        metadata=_meta(
            "A file seen before (same sha256): process again, skip, or republish the stored result."
        ),
    )


@dataclass(frozen=True)
class RegionConfig:
    """A region of interest on a camera's frames, read on its own."""

    name: str = field(metadata=_meta("Region name; in each message as `region`."))
    box: tuple[int, ...] | None = field(default=None, metadata=_meta("[x, y, w, h] in frame pixels."))
    polygon: tuple[tuple[float, ...], ...] | None = field(
        default=None, metadata=_meta("4 points [[x, y], ...]: a tilted region, perspective-corrected.")
    )
    mode: Literal["line", "text"] = field(
        default="line", metadata=_meta("`line`: the region is one text line; `text`: detect lines in it.")
    )
    pattern: str | None = field(
        default=None, metadata=_meta("Regex the whole value must match; else it is sent with valid: false.")
    )
    charset: str | None = field(
        default=None, metadata=_meta("Allowed characters; others are removed from the value.")
    )


@dataclass(frozen=True)
class EvidenceConfig:
    """Frames saved (boxes and values drawn) when a value changes; oldest deleted beyond the bounds."""

    dir: Path | None = field(default=None, metadata=_meta("Folder; default <state_dir>/evidence/<name>."))
    max_files: int = field(default=200, metadata=_meta("Frames kept, at most.", min=1))
    max_mb: float = field(default=50.0, metadata=_meta("MiB kept, at most.", min=0.01))


@dataclass(frozen=True)
class CameraSource:
    """A camera, stream or video file read every `interval_s`, per region of interest."""

    name: str = field(metadata=_meta("Source name; used in topics (`result/<name>`)."))
    type: Literal["camera"] = field(metadata=_meta("Source type."))
    url: str | int = field(
        metadata=_meta("Device index or /dev/videoN, rtsp:// http:// tcp:// URL, or a video file.", min=0)
    )
    interval_s: float = field(
        default=1.0, metadata=_meta("Seconds between analysed frames; 0: every frame.", min=0, max=86400)
    )
    regions: tuple[RegionConfig, ...] = field(
        default=(), metadata=_meta("Regions of interest; none: the whole frame (text mode).")
    )
    loop: bool = field(default=False, metadata=_meta("Repeat a video file at its end."))
    resolution: tuple[int, ...] | None = field(
        default=None, metadata=_meta("[w, h] asked of a device; every frame is scaled to it.")
    )
    open_timeout_s: float = field(default=10.0, metadata=_meta("Open timeout.", min=0.1, max=600))
    read_timeout_s: float = field(
        default=5.0, metadata=_meta("A read slower than this restarts the capture.", min=0.1, max=600)
    )
    backoff_min_s: float = field(
        default=1.0, metadata=_meta("First reconnect delay; doubles up to backoff_max_s.", min=0.01)
    )
    backoff_max_s: float = field(default=30.0, metadata=_meta("Longest reconnect delay.", min=0.01))
    change_threshold: float = field(
        default=2.0,
        metadata=_meta("Mean grey-level change (0-255) below which a region is not read again.", min=0),
    )
    debounce_frames: int = field(
        default=2, metadata=_meta("A new value is sent once read the same on this many frames.", min=1)
    )
    evidence: EvidenceConfig | None = field(
        default=None, metadata=_meta("Save the frame when a value changes; null: off.")
    )
    password_file: Path | None = field(default=None, metadata=_meta("File holding the stream password."))
    password_env: str | None = field(
        default=None, metadata=_meta("Environment variable holding the stream password.")
    )
    password_credential: str | None = field(
        default=None, metadata=_meta("systemd credential name holding the stream password.")
    )

    def read_password(self) -> str | None:
        return read_secret(
            f"sources.{self.name}.password",
            file=self.password_file,
            env=self.password_env,
            credential=self.password_credential,
        )


SourceConfig = FolderSource | CameraSource
SOURCE_TYPES: dict[str, type] = {"folder": FolderSource, "camera": CameraSource}
PLANNED_SOURCE_TYPES: dict[str, str] = {}


@dataclass(frozen=True)
class TlsConfig:
    """TLS for `mqtts://`: the CA that signed the broker's certificate, and an optional client certificate."""

    ca_file: Path | None = field(default=None, metadata=_meta("CA bundle (PEM); default: the system CAs."))
    cert_file: Path | None = field(
        default=None, metadata=_meta("Client certificate (PEM), for brokers that require one.")
    )
    key_file: Path | None = field(
        default=None, metadata=_meta("Client private key (PEM); default: inside cert_file.")
    )
    key_password_file: Path | None = field(default=None, metadata=_meta("File holding the key passphrase."))
    key_password_env: str | None = field(
        default=None, metadata=_meta("Environment variable holding the key passphrase.")
    )
    key_password_credential: str | None = field(
        default=None,
        metadata=_meta("systemd credential name ($CREDENTIALS_DIRECTORY/<name>) holding the passphrase."),
    )
    check_hostname: bool = field(
        default=True, metadata=_meta("Verify the broker's host name against its certificate.")
    )

    def read_key_password(self) -> str | None:
        """The key passphrase from its configured source, or None; raises ConfigError if it cannot be read."""
        return read_secret(
            "mqtt.tls.key_password",
            file=self.key_password_file,
            env=self.key_password_env,
            credential=self.key_password_credential,
        )


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery."""

    enabled: bool = field(default=False, metadata=_meta("Publish retained discovery configs."))
    discovery_prefix: str = field(
        default="homeassistant", metadata=_meta("Home Assistant's discovery prefix.")
    )


@dataclass(frozen=True)
class MqttConfig:
    """The broker connection and topic layout."""

    url: str = field(metadata=_meta("mqtt://host[:port] or mqtts://host[:port] (TLS)."))
    topic_prefix: str = field(
        default="edge-ocr", metadata=_meta("First topic level: <prefix>/<device_id>/...")
    )
    client_id: str | None = field(
        default=None, metadata=_meta("MQTT client id; default edge-ocr-<device_id>.")
    )
    username: str | None = field(default=None, metadata=_meta("Login name.", secret=True))
    password_file: Path | None = field(default=None, metadata=_meta("File holding the password."))
    password_env: str | None = field(
        default=None, metadata=_meta("Environment variable holding the password.")
    )
    password_credential: str | None = field(
        default=None,
        metadata=_meta("systemd credential name ($CREDENTIALS_DIRECTORY/<name>) holding the password."),
    )
    keepalive: int = field(
        default=60,
        metadata=_meta("Keepalive in seconds; the broker sends `offline` after 1.5x.", min=5, max=65535),
    )
    qos: Literal[1, 2] = field(default=1, metadata=_meta("QoS of results (0 would lose them)."))
    retain_results: bool = field(
        default=False, metadata=_meta("Retain the last result per source on the broker.")
    )
    max_inflight: int = field(
        default=20, metadata=_meta("Results sent but not yet acknowledged, at most.", min=1, max=1000)
    )
    backoff_min_s: float = field(
        default=1.0, metadata=_meta("First reconnect delay; doubles up to backoff_max_s.", min=0.1)
    )
    backoff_max_s: float = field(default=60.0, metadata=_meta("Longest reconnect delay.", min=0.1))
    stats_interval_s: float = field(
        default=60.0, metadata=_meta("Period of the stats message; 0: off.", min=0)
    )
    tls: TlsConfig | None = field(default=None, metadata=_meta("TLS options (mqtts:// only)."))
    home_assistant: HomeAssistantConfig = field(
        default_factory=HomeAssistantConfig, metadata=_meta("Home Assistant discovery.")
    )

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


@dataclass(frozen=True)
class OutboxConfig:
    """Bounds of the durable outbox; when full, new files wait (back pressure), nothing is dropped."""

    max_messages: int = field(default=10_000, metadata=_meta("Messages waiting, at most.", min=1))
    max_bytes: int = field(
        default=64 * 1024 * 1024, metadata=_meta("Bytes waiting (topic + payload), at most.", min=1024)
    )


@dataclass(frozen=True)
class StorageConfig:
    """The low-space guard: below the reserve, new files wait in the inbox and results keep flowing."""

    min_free_mb: float = field(
        default=64.0,
        metadata=_meta(
            "Free MiB to keep on the filesystems of state_dir, done_dir and failed_dir; 0: no guard.", min=0
        ),
    )
    min_free_percent: float = field(
        default=5.0,
        metadata=_meta(
            "The same reserve as a share of each filesystem; the smaller of the two applies.", min=0, max=100
        ),
    )
    check_interval_s: float = field(
        default=5.0, metadata=_meta("Seconds between two free-space checks.", min=0.1, max=3600)
    )

    def reserve_bytes(self, total_bytes: int) -> int:
        """The reserve on a filesystem of `total_bytes`: a small card keeps its 5%, a big disk its 64 MiB."""
        return int(min(self.min_free_mb * 1024 * 1024, total_bytes * self.min_free_percent / 100))


@dataclass(frozen=True)
class EngineConfig:
    """The OCR engine."""

    workers: int = field(default=1, metadata=_meta("OCR worker threads.", min=1, max=64))
    threads: int = field(
        default=0, metadata=_meta("onnxruntime intra-op threads per worker; 0: its default.", min=0, max=256)
    )
    max_pixels: int = field(
        default=40_000_000, metadata=_meta("Larger images are refused before decoding.", min=1)
    )
    use_cls: bool = field(default=True, metadata=_meta("Run the 0/180 degree direction classifier."))
    precision: Literal["auto", "int8", "fp32"] = field(
        default="auto",
        metadata=_meta(
            "auto: INT8 for a model only where it passed the build's accuracy gate and runs >= 1.1x faster "
            "on this CPU (measured at the first start, then cached); int8 or fp32 force it."
        ),
    )
    model_set: Literal["ppocrv6-small", "ppocrv4-mobile"] | None = field(
        default=None,
        metadata=_meta(
            "Model set: ppocrv6-small (the default: most accurate) or ppocrv4-mobile (faster on long lines)."
        ),
    )
    models_dir: Path | None = field(
        default=None, metadata=_meta("Folder with manifest.yaml; default: the installed models.")
    )


@dataclass(frozen=True)
class HttpConfig:
    """Local HTTP endpoints /healthz and /metrics."""

    enabled: bool = field(default=False, metadata=_meta("Serve /healthz and /metrics."))
    host: str = field(default="127.0.0.1", metadata=_meta("Listen address; keep it on loopback."))
    port: int = field(default=9464, metadata=_meta("Listen port.", min=1, max=65535))


@dataclass(frozen=True)
class LoggingConfig:
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field(default="INFO", metadata=_meta("Log level."))


@dataclass(frozen=True)
class Config:
    """The whole configuration. Paths are absolute after loading."""

    state_dir: Path = field(
        metadata=_meta("Outbox, bookkeeping and the optimized-graph cache (graphs/) live here.")
    )
    sources: tuple[SourceConfig, ...] = field(metadata=_meta("Image sources; at least one."))
    device_id: str = field(
        default_factory=default_device_id, metadata=_meta("Topic level naming this device; default hostname.")
    )
    mqtt: MqttConfig | None = field(
        default=None, metadata=_meta("Broker; null: results go to stdout and stay in the outbox.")
    )
    outbox: OutboxConfig = field(default_factory=OutboxConfig, metadata=_meta("Outbox bounds."))
    storage: StorageConfig = field(
        default_factory=StorageConfig, metadata=_meta("Free space kept on the folders written to.")
    )
    engine: EngineConfig = field(default_factory=EngineConfig, metadata=_meta("OCR engine."))
    http: HttpConfig = field(default_factory=HttpConfig, metadata=_meta("Local HTTP."))
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata=_meta("Logging."))

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Plain data (paths as strings, tuples as lists), secrets masked unless `redact` is False."""
        return _to_plain(self, redact)

    def redacted(self) -> dict[str, Any]:
        """What to log: `to_dict(redact=True)`."""
        return self.to_dict(redact=True)


def _to_plain(value: Any, redact: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            out[f.name] = (
                REDACTED if redact and f.metadata.get("secret") and v is not None else _to_plain(v, redact)
            )
        return out
    if isinstance(value, (tuple, list)):
        return [_to_plain(v, redact) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------------------------- secrets


def read_secret(what: str, *, file: Path | None, env: str | None, credential: str | None) -> str | None:
    """Read a secret from a file, an environment variable or `$CREDENTIALS_DIRECTORY/<credential>`.

    At most one source is set (the schema checks this). A trailing newline is stripped. Returns None
    when no source is configured; raises ConfigError naming the source when it cannot be read.
    """
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {what}_file {file}: {exc.strerror or exc}") from exc
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(
                f"{what}_env names ${env}, which is not set", remedy=f"export {env} or use {what}_file"
            )
        return value
    if credential is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ConfigError(
                f"{what}_credential is {credential!r} but $CREDENTIALS_DIRECTORY is not set",
                remedy=f"add `LoadCredential={credential}:/path/to/secret` to the unit, or use {what}_file",
            )
        path = Path(creds) / credential
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {what} credential {path}: {exc.strerror or exc}") from exc
    return None


# --------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration file."""

    file: str
    line: int | None  # 1-based
    key: str  # key path, e.g. "sources[0].path"; "" for the whole document
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigFileError(ConfigError):
    """A configuration file is invalid; `problems` lists every problem found, each with file, key and line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        if len(problems) == 1:
            text = str(problems[0])
        else:
            text = f"{len(problems)} problems in the configuration:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


# --------------------------------------------------------------------------------------------- walker

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
_SECRET_KEYS = {
    "password": "mqtt.password_file, mqtt.password_env or mqtt.password_credential",
    "key_password": "key_password_file, key_password_env or key_password_credential",
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class _Walker:
    """Converts composed YAML nodes into the schema dataclasses, collecting problems with their lines."""

    def __init__(self, file: str, base_dir: Path, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.base_dir = base_dir
        self.loader = loader
        self.problems: list[ConfigProblem] = []
        self.lines: dict[str, int] = {}

    def error(self, key: str, message: str, node: yaml.Node | None = None) -> None:
        line = node.start_mark.line + 1 if node is not None else self.line_of(key)
        self.problems.append(ConfigProblem(self.file, line, key, message))

    def line_of(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rsplit(".", 1)[0] if "." in key else key.rsplit("[", 1)[0] if "[" in key else ""
        return None

    # -- generic conversion; returns _INVALID after recording a problem
    def convert(self, node: yaml.Node, tp: Any, key: str) -> Any:
        self.lines.setdefault(key, node.start_mark.line + 1)
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            return self._union(node, tp, key)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, tp, key)
        if origin is tuple:
            return self._sequence(node, typing.get_args(tp)[0], key)
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.error(key, f"expected {self._expected(tp)}, got {kind}", node)
            return _INVALID
        value = self._scalar(node, key)
        if value is _INVALID:
            return value
        return self._check_scalar(value, tp, key, node)

    def _scalar(self, node: yaml.ScalarNode, key: str) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.error(key, f"cannot read this value: {getattr(exc, 'problem', exc)}", node)
            return _INVALID

    def _expected(self, tp: Any) -> str:
        origin = typing.get_origin(tp)
        choices = _choices(tp)
        if choices is not None:
            return "one of " + ", ".join(choices)
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            text = " or ".join(self._expected(a) for a in args if a is not type(None))
            return f"{text} or null" if type(None) in args else text
        if origin is tuple:
            return "a list"
        if dataclasses.is_dataclass(tp):
            return "a mapping"
        if tp is type(None):
            return "null"
        return _TYPE_NAMES.get(tp, str(tp))

    def _check_scalar(self, value: Any, tp: Any, key: str, node: yaml.Node) -> Any:
        ok, converted = _match_scalar(value, tp, self.base_dir)
        if not ok:
            hint = " (quote it)" if tp in (str, Path) and value is not None else ""
            self.error(key, f"expected {self._expected(tp)}, got {_describe(value)}{hint}", node)
            return _INVALID
        return converted

    def _union(self, node: yaml.Node, tp: Any, key: str) -> Any:
        args = typing.get_args(tp)
        if isinstance(node, yaml.ScalarNode):
            value = self._scalar(node, key)
            if value is _INVALID:
                return value
            if value is None and type(None) in args:
                return None
            for a in args:
                if (
                    a is not type(None)
                    and not dataclasses.is_dataclass(a)
                    and typing.get_origin(a) is not tuple
                ):
                    ok, converted = _match_scalar(value, a, self.base_dir)
                    if ok:
                        return converted
            hint = " (quote it)" if str in args and value is not None else ""
            self.error(key, f"expected {self._expected(tp)}, got {_describe(value)}{hint}", node)
            return _INVALID
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:
            return self.convert(node, others[0], key)
        self.error(key, f"expected {self._expected(tp)}", node)
        return _INVALID

    def _sequence(self, node: yaml.Node, item_tp: Any, key: str) -> Any:
        if not isinstance(node, yaml.SequenceNode):
            self.error(key, f"expected a list, got {self._node_kind(node, key)}", node)
            return _INVALID
        items = [self.convert(child, item_tp, f"{key}[{i}]") for i, child in enumerate(node.value)]
        return _INVALID if any(i is _INVALID for i in items) else tuple(items)

    def _node_kind(self, node: yaml.Node, key: str) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self._scalar(node, key) if isinstance(node, yaml.ScalarNode) else None
        return _describe(value)

    def mapping(self, node: yaml.Node, key: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """A mapping node's keys -> (key node, value node); duplicate and non-string keys are problems."""
        if not isinstance(node, yaml.MappingNode):
            self.error(key, f"expected a mapping, got {self._node_kind(node, key)}", node)
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, _ in node.value:  # duplicates among the keys written here (merged keys may be overridden)
            name = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if knode.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(name, str) or knode.tag != "tag:yaml.org,2002:str":
                self.error(key, f"keys must be names, got {name!r}", knode)
            elif name in out:
                first = out[name][0].start_mark.line + 1
                self.error(_join(key, name), f"duplicate key (first set on line {first})", knode)
            else:
                out[name] = (knode, knode)
        try:
            self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys; later keys win
        except yaml.YAMLError as exc:
            self.error(key, f"bad merge key: {getattr(exc, 'problem', exc)}", node)
            return None
        out = {}
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.tag == "tag:yaml.org,2002:str":
                out[knode.value] = (knode, vnode)
        return out

    def dataclass(
        self,
        node: yaml.Node,
        cls: type,
        key: str,
        entries: dict[str, tuple[yaml.Node, yaml.Node]] | None = None,
        skip: tuple[str, ...] = (),
    ) -> Any:
        """Build `cls` from a mapping node; `skip`ped fields are left as None for the caller to fill."""
        if entries is None:
            entries = self.mapping(node, key)
        if entries is None:
            return _INVALID
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        bad = False
        for name, (knode, vnode) in entries.items():
            sub = _join(key, name)
            if name not in fields:
                self.error(sub, self._unknown_key_message(name, fields), knode)
                bad = True
                continue
            self.lines[sub] = knode.start_mark.line + 1
            if name in skip:
                kwargs[name] = None
                continue
            value = self.convert(vnode, hints[name], sub)
            if value is _INVALID:
                bad = True
                continue
            if not self._in_range(value, fields[name], sub, vnode):
                bad = True
                continue
            kwargs[name] = value
        for name, f in fields.items():
            missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if missing and name not in entries:
                self.error(_join(key, name), "required key is missing", node)
                bad = True
        return _INVALID if bad else cls(**kwargs)

    def _unknown_key_message(self, name: str, fields: dict[str, dataclasses.Field]) -> str:
        if name in _SECRET_KEYS:
            return (
                f"secrets are not accepted in the configuration file; put the {name.replace('_', ' ')} in a "
                f"file, an environment variable or a systemd credential and name it with {_SECRET_KEYS[name]}"
            )
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(fields)})"
        return f"unknown key{hint}"

    def _in_range(self, value: Any, f: dataclasses.Field, key: str, node: yaml.Node) -> bool:
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        if lo is not None and value < lo:
            self.error(key, f"must be at least {lo:g}, got {value:g}", node)
            return False
        if hi is not None and value > hi:
            self.error(key, f"must be at most {hi:g}, got {value:g}", node)
            return False
        return True


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _literal_text(a: Any) -> str:
    return str(a).lower() if isinstance(a, bool) else str(a)


def _choices(tp: Any) -> list[str] | None:
    """The allowed values of a Literal, bool or a union of them (plus null), or None if not a finite set."""
    if typing.get_origin(tp) is Literal:
        return [_literal_text(a) for a in typing.get_args(tp)]
    if tp is bool:
        return ["true", "false"]
    if tp is type(None):
        return ["null"]
    if typing.get_origin(tp) in (Union, types.UnionType):
        out: list[str] = []
        for a in typing.get_args(tp):
            sub = _choices(a)
            if sub is None:
                return None
            out += sub
        return out
    return None


def _match_scalar(value: Any, tp: Any, base_dir: Path) -> tuple[bool, Any]:
    if typing.get_origin(tp) is Literal:
        for a in typing.get_args(tp):
            if value == a and type(value) is type(a):
                return True, a
        return False, None
    if tp is type(None):
        return value is None, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if tp is Path:
        if not isinstance(value, str) or not value:
            return False, None
        return True, _resolve(base_dir, value)
    raise TypeError(f"unsupported schema type {tp!r}")  # a bug in the schema, not in the file


def _resolve(base_dir: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base_dir / path).absolute()


# --------------------------------------------------------------------------------------------- loading


def _load_sources(w: _Walker, node: yaml.Node, key: str) -> Any:
    if not isinstance(node, yaml.SequenceNode):
        w.error(key, f"expected a list of sources, got {w._node_kind(node, key)}", node)
        return _INVALID
    if not node.value:
        w.error(key, "at least one source is needed", node)
        return _INVALID
    out: list[Any] = []
    for i, child in enumerate(node.value):
        sub = f"{key}[{i}]"
        entries = w.mapping(child, sub)
        if entries is None:
            out.append(_INVALID)
            continue
        if "type" not in entries:
            w.error(_join(sub, "type"), f"required key is missing (one of: {', '.join(SOURCE_TYPES)})", child)
            out.append(_INVALID)
            continue
        tnode = entries["type"][1]
        kind = tnode.value if isinstance(tnode, yaml.ScalarNode) else None
        if kind in PLANNED_SOURCE_TYPES:
            w.error(
                _join(sub, "type"),
                f"{PLANNED_SOURCE_TYPES[kind]}; supported: {', '.join(SOURCE_TYPES)}",
                tnode,
            )
            out.append(_INVALID)
            continue
        if kind not in SOURCE_TYPES:
            w.error(
                _join(sub, "type"),
                f"unknown source type {kind!r}; supported: {', '.join(SOURCE_TYPES)}",
                tnode,
            )
            out.append(_INVALID)
            continue
        src = w.dataclass(child, SOURCE_TYPES[kind], sub, entries)
        if isinstance(src, CameraSource) and isinstance(src.url, str) and _is_file_url(src.url):
            src = dataclasses.replace(src, url=str(_resolve(w.base_dir, src.url)))  # like every path
        out.append(src)
    return _INVALID if any(s is _INVALID for s in out) else tuple(out)


def _is_file_url(url: str) -> bool:
    """A camera url naming a video file (not a device, not a stream URL)."""
    return bool(url) and "://" not in url and not url.startswith("/dev/") and not url.isdigit()


def _load_config(w: _Walker, root: yaml.Node) -> Config | None:
    entries = w.mapping(root, "")
    if entries is None:
        return None
    # `sources` has a tagged union that the generic walker does not know; it is converted here.
    cfg = w.dataclass(root, Config, "", entries, skip=("sources",))
    sources = _load_sources(w, entries["sources"][1], "sources") if "sources" in entries else _INVALID
    if cfg is not _INVALID and sources is _INVALID:
        _check(dataclasses.replace(cfg, sources=()), w.error)  # still report what can be checked
    if cfg is _INVALID or sources is _INVALID:
        return None
    cfg = dataclasses.replace(cfg, sources=sources)
    _check(cfg, w.error)
    return None if w.problems else _finish(cfg)


def _check(cfg: Config, error: Callable[[str, str], None]) -> None:
    """Rules that involve a value's meaning or several keys; each reports the key it is about."""
    if not _NAME_RE.match(cfg.device_id):
        error("device_id", f"{cfg.device_id!r} must be letters, digits, '_', '.', '-' (it is a topic level)")
    if cfg.mqtt is not None:
        _check_mqtt(cfg.mqtt, error)
    if not cfg.sources:  # left out by the caller when the sources had problems of their own
        return
    names: dict[str, int] = {}
    inboxes: dict[Path, int] = {}
    for i, src in enumerate(cfg.sources):
        key = f"sources[{i}]"
        if isinstance(src, FolderSource):
            if src.path in inboxes:
                error(f"{key}.path", f"sources[{inboxes[src.path]}] already watches {src.path}")
            inboxes.setdefault(src.path, i)
        if not _NAME_RE.match(src.name):
            error(f"{key}.name", f"{src.name!r} must be letters, digits, '_', '.', '-' (it is a topic level)")
        if src.name in names:
            error(f"{key}.name", f"duplicate source name (also sources[{names[src.name]}])")
        names.setdefault(src.name, i)
        if isinstance(src, FolderSource):
            _check_folder(src, key, error)
        elif isinstance(src, CameraSource):
            _check_camera(src, key, error)


def _check_folder(src: FolderSource, key: str, error: Callable[[str, str], None]) -> None:
    if src.on_success == "delete" and src.done_dir is not None:
        error(f"{key}.done_dir", "done_dir is not used with `on_success: delete`; remove one of them")
    for name in ("done_dir", "failed_dir"):
        target = getattr(src, name)
        if target is None:
            continue
        if target == src.path:
            error(f"{key}.{name}", f"must not be the inbox itself ({src.path})")
        elif src.recursive and target.is_relative_to(src.path):
            error(
                f"{key}.{name}", "must not be inside the inbox when `recursive: true` (files would come back)"
            )


def _check_camera(src: CameraSource, key: str, error: Callable[[str, str], None]) -> None:
    url = src.url
    if isinstance(url, str):
        parts = urlsplit(url)
        if not url.strip():
            error(f"{key}.url", "must not be empty")
        elif "://" in url and parts.password is not None:
            error(
                f"{key}.url",
                "secrets are not accepted in the configuration file; keep the user name in the URL and put "
                "the password in password_file, password_env or password_credential",
            )
    secrets = [n for n in ("password_file", "password_env", "password_credential") if getattr(src, n)]
    if len(secrets) > 1:
        error(f"{key}.{secrets[1]}", "set only one of password_file, password_env, password_credential")
    if secrets and not (isinstance(url, str) and urlsplit(url).username):
        error(f"{key}.{secrets[0]}", "a stream password needs a user name in the URL (rtsp://user@host/...)")
    if src.resolution is not None and (len(src.resolution) != 2 or min(src.resolution) < 1):
        error(f"{key}.resolution", "must be [width, height], both positive")
    if src.backoff_min_s > src.backoff_max_s:
        error(f"{key}.backoff_min_s", "must not exceed backoff_max_s")
    seen: dict[str, int] = {}
    for j, r in enumerate(src.regions):
        rkey = f"{key}.regions[{j}]"
        if not _NAME_RE.match(r.name):
            error(f"{rkey}.name", f"{r.name!r} must be letters, digits, '_', '.', '-'")
        if r.name in seen:
            error(f"{rkey}.name", f"duplicate region name (also regions[{seen[r.name]}])")
        seen.setdefault(r.name, j)
        if r.box is not None and r.polygon is not None:
            error(f"{rkey}.polygon", "give box or polygon, not both")
        if r.box is None and r.polygon is None:
            error(f"{rkey}.box", "a region needs box: [x, y, w, h] or polygon: [[x, y] x4]")
        if r.box is not None and (len(r.box) != 4 or r.box[2] < 2 or r.box[3] < 2 or min(r.box[:2]) < 0):
            error(f"{rkey}.box", "must be [x, y, w, h] with x, y >= 0 and w, h >= 2")
        if r.polygon is not None and (len(r.polygon) != 4 or any(len(p) != 2 for p in r.polygon)):
            error(f"{rkey}.polygon", "must be 4 points [[x, y], [x, y], [x, y], [x, y]]")
        if r.pattern is not None:
            try:
                re.compile(r.pattern)
            except re.error as exc:
                error(f"{rkey}.pattern", f"not a valid regular expression: {exc}")
        if r.charset is not None and not r.charset:
            error(f"{rkey}.charset", "must not be empty (leave it out to allow every character)")


def _check_mqtt(m: MqttConfig, error: Callable[[str, str], None]) -> None:
    parts = urlsplit(m.url)
    if parts.scheme not in ("mqtt", "mqtts"):
        error("mqtt.url", f"must start with mqtt:// or mqtts://, got {m.url!r}")
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        error("mqtt.url", f"bad port in {m.url!r}")
    if not parts.hostname:
        error("mqtt.url", f"no host in {m.url!r}")
    if parts.password is not None:
        error(
            "mqtt.url",
            "secrets are not accepted in the configuration file; put the password in mqtt.password_file",
        )
    elif parts.username is not None:
        error("mqtt.url", "put the user name in mqtt.username, not in the URL")
    if parts.path not in ("", "/") or parts.query:
        error("mqtt.url", f"unexpected path or query in {m.url!r}")
    if m.tls is not None and parts.scheme == "mqtt":
        error("mqtt.tls", "TLS options need an mqtts:// url")
    prefix = m.topic_prefix
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\0"):
        error("mqtt.topic_prefix", f"{prefix!r} is not a topic prefix (no + or #, no leading or trailing /)")
    sources = [
        n for n in ("password_file", "password_env", "password_credential") if getattr(m, n) is not None
    ]
    if len(sources) > 1:
        error(f"mqtt.{sources[1]}", "set only one of password_file, password_env, password_credential")
    if sources and m.username is None:
        error(f"mqtt.{sources[0]}", "a password needs a username (mqtt.username)")
    if m.backoff_min_s > m.backoff_max_s:
        error("mqtt.backoff_min_s", "must not exceed backoff_max_s")
    if m.tls is not None:
        t = m.tls
        if len([s for s in (t.key_password_file, t.key_password_env, t.key_password_credential) if s]) > 1:
            error(
                "mqtt.tls.key_password_file",
                "set only one of key_password_file, key_password_env, key_password_credential",
            )
        if t.key_file is not None and t.cert_file is None:
            error("mqtt.tls.key_file", "key_file needs cert_file")
    for name in ("password_credential",):
        value = getattr(m, name)
        if value is not None and ("/" in value or value in ("", ".", "..")):
            error(f"mqtt.{name}", "a credential name is a plain file name")


def _finish(cfg: Config) -> Config:
    """Fill the defaults that depend on other keys."""
    sources = []
    for src in cfg.sources:
        if isinstance(src, FolderSource):
            done = src.done_dir
            if done is None and src.on_success == "move":
                done = cfg.state_dir / "done" / src.name
            failed = src.failed_dir or cfg.state_dir / "failed" / src.name
            src = dataclasses.replace(src, done_dir=done, failed_dir=failed)
        elif isinstance(src, CameraSource) and src.evidence is not None and src.evidence.dir is None:
            evidence = dataclasses.replace(src.evidence, dir=cfg.state_dir / "evidence" / src.name)
            src = dataclasses.replace(src, evidence=evidence)
        sources.append(src)
    mqtt = cfg.mqtt
    if mqtt is not None and mqtt.client_id is None:
        mqtt = dataclasses.replace(mqtt, client_id=f"edge-ocr-{cfg.device_id}")
    return dataclasses.replace(cfg, sources=tuple(sources), mqtt=mqtt)


def parse_config(text: str, file: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate YAML text; relative paths resolve against `base_dir` (default: the working directory)."""
    base = (base_dir or Path.cwd()).absolute()
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise ConfigFileError(
                [ConfigProblem(file, line, "", f"not valid YAML: {exc.problem or exc}")]
            ) from None
        if root is None:
            raise ConfigFileError([ConfigProblem(file, 1, "", "the file is empty; see config/edge-ocr.yaml")])
        w = _Walker(file, base, loader)
        cfg = _load_config(w, root)
        if cfg is None:
            raise ConfigFileError(sorted(w.problems, key=lambda p: p.line or 0))
        return cfg
    finally:
        loader.dispose()


def validate_file(path: Path) -> Config:
    """Read and validate a configuration file; raises ConfigError (a `ConfigFileError` for content)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from exc
    return parse_config(text, str(path), path.absolute().parent)


def default_config(cwd: Path | None = None) -> Config:
    """The embedded default: ./inbox, state in ./var, no broker."""
    base = (cwd or Path.cwd()).absolute()
    state = base / "var"
    src = FolderSource(name="inbox", type="folder", path=base / "inbox")
    return _finish(Config(state_dir=state, sources=(src,)))


def load_config(path: Path | None) -> Config:
    """The configuration in `path`, or the embedded default when `path` is None."""
    return default_config() if path is None else validate_file(path)
