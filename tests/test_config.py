"""Config: schema validation, errors naming file/key/line, secrets, defaults and the documented example."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from edge_ocr.config import (
    Config,
    ConfigFileError,
    FolderSource,
    default_config,
    json_schema_text,
    load_config,
    read_secret,
    validate_file,
)
from edge_ocr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "edge-ocr.yaml"

MINIMAL = """\
state_dir: var
sources:
  - name: inbox
    type: folder
    path: inbox
"""


def write(tmp_path: Path, text: str, name: str = "edge-ocr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[tuple[int | None, str, str]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as info:
        validate_file(path)
    for p in info.value.problems:
        assert p.file == str(path)
        assert str(path) in str(info.value)
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_contract_example_from_issue(tmp_path: Path) -> None:
    cfg = validate_file(
        write(
            tmp_path,
            """\
            device_id: pi-042
            state_dir: /var/lib/edge-ocr          # outbox and bookkeeping
            sources:
              - name: inbox
                type: folder
                path: /var/lib/edge-ocr/inbox
                done_dir: /var/lib/edge-ocr/done  # or: on_success: delete
                failed_dir: /var/lib/edge-ocr/failed
            mqtt:
              url: mqtt://127.0.0.1:1883          # mqtts:// for TLS
              topic_prefix: edge-ocr
              username: edge
              password_file: /run/credentials/edge-ocr.service/mqtt-password
            """,
        )
    )
    assert cfg.device_id == "pi-042"
    src = cfg.sources[0]
    assert isinstance(src, FolderSource)
    assert src.done_dir == Path("/var/lib/edge-ocr/done")
    assert cfg.mqtt is not None
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.use_tls) == ("127.0.0.1", 1883, False)
    assert cfg.mqtt.client_id == "edge-ocr-pi-042"
    assert cfg.outbox_path == Path("/var/lib/edge-ocr/outbox.sqlite3")


def test_minimal_file_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = validate_file(write(tmp_path, MINIMAL))
    src = cfg.sources[0]
    assert cfg.state_dir == tmp_path / "var"
    assert src.path == tmp_path / "inbox"  # relative to the file, not the working directory
    assert src.done_dir == tmp_path / "var" / "done" / "inbox"
    assert src.failed_dir == tmp_path / "var" / "failed" / "inbox"
    assert cfg.mqtt is None
    assert cfg.device_id


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert cfg == default_config(tmp_path)
    assert cfg.state_dir == tmp_path / "var"
    assert cfg.sources[0].path == tmp_path / "inbox"
    assert cfg.sources[0].done_dir == tmp_path / "var" / "done" / "inbox"
    assert cfg.mqtt is None


def test_documented_example_is_valid_and_documents_every_key() -> None:
    cfg = validate_file(EXAMPLE)
    assert cfg.mqtt is not None
    text = EXAMPLE.read_text()
    missing = []

    def walk(cls: type[BaseModel]) -> None:
        for name, field in cls.model_fields.items():
            if not re.search(rf"^\s*(#\s*)*(- )?{name}:", text, re.MULTILINE):
                missing.append(f"{cls.__name__}.{name}")
            for t in _model_types(field.annotation):
                walk(t)

    walk(Config)
    assert not missing, f"keys not documented in {EXAMPLE.name}: {missing}"


def _model_types(tp: object) -> list[type[BaseModel]]:
    """The section models inside an annotation (X, X | None, tuple[X, ...], Annotated[X | Y, ...])."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _model_types(arg)]


def test_unknown_key_names_file_key_line_and_suggests(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        state_dir: var
        sources:
          - name: inbox
            type: folder
            path: inbox
            stabel_s: 3
        """,
    )
    assert found == [(6, "sources[0].stabel_s", "unknown key (did you mean 'stable_s'?)")]


def test_wrong_types_each_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        device_id: 42
        state_dir: var
        sources:
          - name: inbox
            type: folder
            path: [a, b]
            recursive: maybe
            poll: sometimes
            stable_s: fast
        mqtt:
          url: mqtt://h
          keepalive: 1.5
        """,
    )
    by_key = {key: (line, msg) for line, key, msg in found}
    assert by_key["device_id"][0] == 1 and "quote it" in by_key["device_id"][1]
    assert by_key["sources[0].path"] == (6, "expected a path, got a list")
    assert by_key["sources[0].recursive"][0] == 7
    assert by_key["sources[0].poll"] == (8, "expected one of auto, true, false, got a string ('sometimes')")
    assert by_key["sources[0].stable_s"][0] == 9
    assert by_key["mqtt.keepalive"] == (12, "expected an integer, got a number (1.5)")


def test_missing_required_keys(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        device_id: pi
        sources:
          - name: inbox
            type: folder
        mqtt:
          topic_prefix: x
        """,
    )
    keys = {key: line for line, key, _ in found}
    assert keys == {"state_dir": 1, "sources[0].path": 3, "mqtt.url": 6}
    assert all(msg == "required key is missing" for _, _, msg in found)


def test_run_needs_a_source_and_serve_does_not(tmp_path: Path) -> None:
    """`edge-ocr serve` watches nothing: `http:` and `state_dir` are a whole config for it. `run` still
    needs a source, and says so at the file, key and line (issue 20)."""
    text = """\
        state_dir: var
        http:
          port: 9464
        """
    assert problems(tmp_path, text) == [
        (1, "sources", "`edge-ocr run` needs at least one source (`edge-ocr serve` runs without)")
    ]
    path = write(tmp_path, text.rstrip(" ") + "        sources: []\n")
    with pytest.raises(ConfigFileError) as info:
        validate_file(path)
    assert [(p.line, p.key) for p in info.value.problems] == [(4, "sources")]
    cfg = validate_file(write(tmp_path, text), sources_required=False)
    assert cfg.sources == () and cfg.http.port == 9464 and cfg.state_dir == tmp_path / "var"
    assert load_config(write(tmp_path, text), sources_required=False).sources == ()


def test_camera_source_loads_and_a_bad_region_is_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        state_dir: var
        sources:
          - name: meter
            type: camera
            url: /dev/video0
            regions:
              - name: reading
                box: [1, 2, 3]
        """,
    )
    assert len(found) == 1
    line, key, msg = found[0]
    assert (line, key) == (8, "sources[0].regions[0].box")
    assert "[x, y, w, h]" in msg


def test_password_in_yaml_is_refused_with_where_to_put_it(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        state_dir: var
        sources: [{name: inbox, type: folder, path: inbox}]
        mqtt:
          url: mqtt://127.0.0.1
          username: edge
          password: hunter2
        """,
    )
    assert len(found) == 1
    line, key, msg = found[0]
    assert (line, key) == (6, "mqtt.password")
    assert "password_file" in msg and "password_env" in msg and "password_credential" in msg
    assert "hunter2" not in msg


def test_password_in_url_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "mqtt:\n  url: mqtt://edge:hunter2@host\n")
    assert [(line, key) for line, key, _ in found] == [(7, "mqtt.url")]
    assert "hunter2" not in found[0][2]


def test_rules_across_keys(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        state_dir: var
        sources:
          - {name: a, type: folder, path: in, on_success: delete, done_dir: done}
          - {name: a, type: folder, path: in, recursive: true, failed_dir: in/failed}
        mqtt:
          url: ftp://host
          password_env: X
          backoff_min_s: 10
          backoff_max_s: 1
        """,
    )
    keys = {(line, key) for line, key, _ in found}
    assert keys == {
        (3, "sources[0].done_dir"),
        (4, "sources[1].name"),
        (4, "sources[1].path"),
        (4, "sources[1].failed_dir"),
        (6, "mqtt.url"),
        (7, "mqtt.password_env"),
        (8, "mqtt.backoff_min_s"),
    }


def test_tls_needs_mqtts(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "mqtt:\n  url: mqtt://h\n  tls:\n    ca_file: ca.pem\n")
    assert [(line, key) for line, key, _ in found] == [(8, "mqtt.tls")]


def test_qos0_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "mqtt:\n  url: mqtt://h\n  qos: 0\n")
    assert found == [(8, "mqtt.qos", "expected one of 1, 2, got an integer (0)")]


def test_duplicate_key(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "outbox:\n  max_messages: 3\n  max_messages: 5\n")
    assert found == [(8, "outbox.max_messages", "duplicate key (first set on line 7)")]


def test_out_of_range(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "outbox:\n  max_messages: 0\nhttp:\n  port: 70000\n")
    assert found == [
        (7, "outbox.max_messages", "must be at least 1, got 0"),
        (9, "http.port", "must be at most 65535, got 70000"),
    ]


def test_storage_reserve_defaults_range_and_the_smaller_reserve_applies(tmp_path: Path) -> None:
    cfg = validate_file(write(tmp_path, MINIMAL))
    assert (cfg.storage.min_free_mb, cfg.storage.min_free_percent) == (64.0, 5.0)
    assert cfg.storage.reserve_bytes(32 * 10**9) == 64 * 1024 * 1024  # a big card keeps 64 MiB
    assert cfg.storage.reserve_bytes(100 * 10**6) == 5 * 10**6  # a small partition its 5%
    cfg = validate_file(write(tmp_path, MINIMAL + "storage:\n  min_free_mb: 0\n"))
    assert cfg.storage.reserve_bytes(10**9) == 0
    found = problems(
        tmp_path, MINIMAL + "storage:\n  min_free_mb: -1\n  min_free_percent: 120\n  min_free_pct: 5\n"
    )
    assert found == [
        (7, "storage.min_free_mb", "must be at least 0, got -1"),
        (8, "storage.min_free_percent", "must be at most 100, got 120"),
        (9, "storage.min_free_pct", found[2][2]),
    ]
    assert "min_free_percent" in found[2][2], "the message should suggest the right key"


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "state_dir: var\nsources:\n  - name: [unclosed\n")
    assert len(found) == 1 and found[0][0] is not None and "not valid YAML" in found[0][2]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a list\n"])
def test_empty_or_not_a_mapping(tmp_path: Path, text: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        validate_file(tmp_path / "nope.yaml")


def test_merge_keys_work(tmp_path: Path) -> None:
    cfg = validate_file(
        write(
            tmp_path,
            """\
            state_dir: var
            sources:
              - &base {name: a, type: folder, path: a, stable_s: 5}
              - <<: *base
                name: b
                path: b
            """,
        )
    )
    assert [s.name for s in cfg.sources] == ["a", "b"]
    assert cfg.sources[1].stable_s == 5


def test_redacted_hides_username(tmp_path: Path) -> None:
    cfg = validate_file(write(tmp_path, MINIMAL + "mqtt:\n  url: mqtt://h\n  username: edge\n"))
    red = cfg.redacted()
    assert red["mqtt"]["username"] == "***"
    assert cfg.to_dict(redact=False)["mqtt"]["username"] == "edge"
    assert red["sources"][0]["path"] == str(tmp_path / "inbox")


def test_secrets_from_file_env_and_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    assert read_secret("mqtt.password", file=tmp_path / "pw", env=None, credential=None) == "s3cret"
    monkeypatch.setenv("EDGE_PW", "from-env")
    assert read_secret("mqtt.password", file=None, env="EDGE_PW", credential=None) == "from-env"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret("mqtt.password", file=None, env=None, credential="mqtt-password") == "from-systemd"
    assert read_secret("mqtt.password", file=None, env=None, credential=None) is None

    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        read_secret("mqtt.password", file=None, env=None, credential="mqtt-password")
    with pytest.raises(ConfigError, match="NOT_SET"):
        read_secret("mqtt.password", file=None, env="NOT_SET", credential=None)
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret("mqtt.password", file=tmp_path / "missing", env=None, credential=None)


def test_read_password_through_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret")
    cfg = validate_file(
        write(tmp_path, MINIMAL + "mqtt:\n  url: mqtts://h\n  username: u\n  password_file: pw\n")
    )
    assert cfg.mqtt is not None
    assert cfg.mqtt.read_password() == "s3cret"
    assert cfg.mqtt.port == 8883
    assert "s3cret" not in repr(cfg.redacted())


# ------------------------------------------------------------------------------------------ JSON Schema

SCHEMA = REPO / "config" / "edge-ocr.schema.json"
EXAMPLES = [p for p in (EXAMPLE, REPO / "config" / "container.yaml") if p.exists()]


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == json_schema_text(), (
        f"{SCHEMA.name} is stale: edge-ocr config schema > config/{SCHEMA.name}"
    )


def test_config_schema_command_prints_json() -> None:
    py = shlex.quote(sys.executable)
    pipeline = (
        f"set -o pipefail; {py} -m edge_ocr config schema | {py} -c 'import json,sys; json.load(sys.stdin)'"
    )
    check = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    out = subprocess.run(
        [sys.executable, "-m", "edge_ocr", "config", "schema"], capture_output=True, timeout=60
    )
    assert json.loads(out.stdout) == json.loads(SCHEMA.read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_schema_and_point_editors_to_it(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(path.read_text()))
    assert path.read_text().startswith(f"# yaml-language-server: $schema=./{SCHEMA.name}\n")


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    good = yaml.safe_load(MINIMAL)
    assert not list(validator.iter_errors(good))
    for bad in (
        {**good, "stat_dir": "x"},
        {**good, "sources": []},
        {**good, "sources": [{**good["sources"][0], "type": "scanner"}]},
        {**good, "mqtt": {"url": "mqtt://h", "password": "x"}},
        {**good, "mqtt": {"url": "mqtt://h", "qos": 0}},
        {**good, "http": {"port": 70000}},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_every_field_is_described() -> None:
    undescribed = []

    def walk(cls: type[BaseModel]) -> None:
        if not cls.__doc__:
            undescribed.append(cls.__name__)
        for name, field in cls.model_fields.items():
            if not field.description:
                undescribed.append(f"{cls.__name__}.{name}")
            for t in _model_types(field.annotation):
                walk(t)

    walk(Config)
    assert not undescribed


def test_config_objects_are_immutable(tmp_path: Path) -> None:
    cfg = validate_file(EXAMPLE)
    with pytest.raises(ValidationError):
        cfg.engine.threads = 4  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.sources[0].path = tmp_path  # type: ignore[misc]
    assert isinstance(cfg.sources, tuple)
