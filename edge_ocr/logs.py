"""Log lines on stderr: text (the default; journald adds its own fields) or one JSON object a line for
log collectors, and secrets redacted in both.

- `configure(format, level)`: the `logging:` section applied to the root logger's stderr handler.
- JSON lines carry `ts` (ISO 8601, UTC), `level`, `logger`, `msg`, and the context fields a line was
  logged with (`extra={"source": ..., "file": ..., "id": ..., "region": ..., "reason": ...}`), plus
  `exc` with the traceback when there is one.
- Redaction: every secret the configuration reads (`config.secrets.read_secret` registers it) and the
  password of a URL (`mqtt://user:PASSWORD@host`) become `***` in the final line, whatever logged it
  (a library's message, an exception's text, a traceback).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import datetime, timezone
from typing import Any, Literal

CONTEXT_FIELDS = ("source", "file", "id", "region", "reason")
MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<password>[^/\s@]+)@")
_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def remember_secret(value: str | None) -> None:
    """Mask `value` in every log line from now on (too short a value would mask ordinary text)."""
    global _secrets
    if value and len(value) >= 4:
        with _lock:
            _secrets = _secrets | {value}


def redact(text: str) -> str:
    """`text` with every remembered secret and any URL's password replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):  # a secret containing another goes first
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}:{MASK}@", text) if "@" in text else text


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, the line's context fields, exc; redacted."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exc"] = redact(record.exc_text)
        if record.stack_info:
            doc["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def setup(level: int) -> None:
    """At start (before any config is read): text lines on stderr at `level`, already redacted."""
    logging.basicConfig(level=level, format=TEXT_FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(TextFormatter())


def configure(fmt: Literal["text", "json"], level: str | int) -> None:
    """Apply the config's `logging:` section to the root logger and its handlers."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        handler.setFormatter(formatter(fmt))
