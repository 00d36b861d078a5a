"""Log lines (edge_ocr/logs.py): `logging: {format: text|json, level}`; JSON is one object a line with
ts (ISO 8601, UTC), level, logger, msg and the line's context fields; secrets redacted in both formats.
The end-to-end test reads every line a real `edge-ocr run` writes to stderr (issue 20)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

from daemon_harness import DEVICE, daemon_config, drop, names_in, tiny_png
from mqtt_broker import Subscriber, wait_until

from edge_ocr import logs
from edge_ocr.config import read_secret

PASSWORD = "pw-Very-Secret-7f3a"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("edge_ocr.daemon", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_has_ts_level_logger_msg_and_its_context() -> None:
    line = logs.JsonFormatter().format(
        record(
            "%s: failed: %s", "a/b.png", "bad", source="inbox", file="a/b.png", id="x1", reason="InputError"
        )
    )
    doc = json.loads(line)
    assert set(doc) == {"ts", "level", "logger", "msg", "source", "file", "id", "reason"}
    assert (doc["level"], doc["logger"], doc["msg"]) == ("WARNING", "edge_ocr.daemon", "a/b.png: failed: bad")
    assert (doc["source"], doc["file"], doc["id"], doc["reason"]) == ("inbox", "a/b.png", "x1", "InputError")
    ts = datetime.fromisoformat(doc["ts"])
    assert ts.utcoffset() == timedelta(0) and doc["ts"][10] == "T"


def test_a_traceback_is_one_json_line_too() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord(
            "edge_ocr.x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_secrets_read_from_the_config_and_url_passwords_are_redacted_in_both_formats(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("another-Secret-91\n")
    assert read_secret("password", file=secret, env=None, credential=None) == "another-Secret-91"
    rec = record("login %s failed at %s", "another-Secret-91", "mqtt://edge:url-pass-55@broker:1883")
    text = logs.TextFormatter().format(rec)
    doc = json.loads(logs.JsonFormatter().format(rec))
    for out in (text, doc["msg"]):
        assert "another-Secret-91" not in out and "url-pass-55" not in out
        assert "login *** failed at mqtt://edge:***@broker:1883" in out


def test_run_with_json_logs_every_stderr_line_is_json_and_no_line_has_the_password(
    tmp_path: Path, mosquitto_factory, daemons
) -> None:
    broker = mosquitto_factory(users={"edge": PASSWORD, "test": "test-password"})
    root = tmp_path / "box"
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")
    cfg = daemon_config(root, broker, logging={"level": "DEBUG", "format": "json"})
    cfg["mqtt"].update(username="edge", password_file=str(secret))
    sub = Subscriber(broker, [f"edge-ocr/{DEVICE}/#"], username="test", password="test-password")
    d = daemons(cfg).start()
    assert d.wait_log(r'"msg": "ready"', 90), d.tail()
    drop(root / "inbox", "logs.png", tiny_png("logs"))
    topic = f"edge-ocr/{DEVICE}/result/inbox"
    assert sub.wait_for(lambda ms: any(m.topic == topic for m in ms), 60), d.tail()
    assert wait_until(lambda: names_in(root / "done" / "inbox") == {"logs.png"}, 30), d.tail()
    assert d.stop() == 0
    sub.close()

    # The harness writes one header line per run into the same file; everything else is the daemon's.
    lines = [ln for ln in d.log().splitlines()[1:] if ln.strip()]
    assert len(lines) > 5, d.tail()
    docs = []
    for ln in lines:
        assert PASSWORD not in ln
        doc = json.loads(ln)  # every line: one JSON object
        assert {"ts", "level", "logger", "msg"} <= set(doc), ln
        docs.append(doc)
    done = [doc for doc in docs if doc["msg"].startswith("logs.png: ")]
    assert done and done[0]["source"] == "inbox" and done[0]["file"] == "logs.png" and done[0]["id"], done
    assert any(doc["msg"] == "stopped" for doc in docs)
