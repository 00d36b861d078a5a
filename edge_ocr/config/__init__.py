"""The configuration: its schema (typed models, declared once), loading with file/key/line errors, secrets.

- `schema`: one frozen pydantic model per section; unknown keys are refused, every field is described,
  ranges are constraints and rules across keys are validators. `edge-ocr config schema` prints the
  JSON Schema generated from it (committed as config/edge-ocr.schema.json, which editors read).
- `load`: YAML to `Config`; every problem names the file, the key path (``sources[0].path``) and the line,
  with a "did you mean" for unknown keys, all raised together as one `ConfigFileError`.
- `secrets`: passwords come from a file, an environment variable or a systemd credential, never the YAML.

Decisions a reader should know:

- Relative paths in a file are resolved against the directory of that file (not the working
  directory), so a unit file and a shell see the same folders; ``~`` is expanded.
- A source's ``done_dir`` and ``failed_dir`` default to ``<state_dir>/done/<name>`` and
  ``<state_dir>/failed/<name>``: one rule that works for any number of sources. After loading both are
  always set, except ``done_dir`` with ``on_success: delete``.
- Secrets never live in the YAML: ``password:`` is rejected with a message saying where to put it, and
  read only when needed (`MqttConfig.read_password`), so a fleet config can be validated on a laptop that
  has none of the secrets. `Config.redacted()` is what gets logged.
- With no file, `default_config` is used: watch ``./inbox``, state in ``./var``, no broker (results go to
  stdout and stay in the outbox).
"""

from __future__ import annotations

import json
from typing import Any

from edge_ocr.config.load import (
    ConfigFileError,
    ConfigProblem,
    default_config,
    load_config,
    parse_config,
    validate_file,
)
from edge_ocr.config.schema import (
    REDACTED,
    SOURCE_TYPES,
    CameraSource,
    Config,
    EngineConfig,
    EvidenceConfig,
    FolderSource,
    HistoryConfig,
    HomeAssistantConfig,
    HttpConfig,
    LoggingConfig,
    MqttConfig,
    OutboxConfig,
    RegionConfig,
    SourceConfig,
    StorageConfig,
    TlsConfig,
    default_device_id,
)
from edge_ocr.config.secrets import read_secret

__all__ = [
    "REDACTED",
    "SOURCE_TYPES",
    "CameraSource",
    "Config",
    "ConfigFileError",
    "ConfigProblem",
    "EngineConfig",
    "EvidenceConfig",
    "FolderSource",
    "HistoryConfig",
    "HomeAssistantConfig",
    "HttpConfig",
    "LoggingConfig",
    "MqttConfig",
    "OutboxConfig",
    "RegionConfig",
    "SourceConfig",
    "StorageConfig",
    "TlsConfig",
    "default_config",
    "default_device_id",
    "json_schema",
    "load_config",
    "parse_config",
    "read_secret",
    "validate_file",
]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file, for editors (yaml-language-server) and other tools."""
    schema = Config.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def json_schema_text() -> str:
    """`json_schema()` as committed in config/edge-ocr.schema.json."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
