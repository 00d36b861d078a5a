"""The result message contract: stable ids, topics and the JSON payload published for each input."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from edge_ocr.types import OcrResult

# A fixed namespace makes ids reproducible: the same file processed again after a crash gets the
# same id, so consumers can drop the rare duplicate.
_NAMESPACE = uuid.UUID("5b0a2f0e-4c2a-4f43-9a55-6f63722d6f63")


def message_id(device_id: str, source: str, name: str, sha256: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{device_id}\0{source}\0{name}\0{sha256}"))


def iso(ts: float | None = None) -> str:
    when = datetime.now(timezone.utc) if ts is None else datetime.fromtimestamp(ts, timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def safe_topic_level(name: str) -> str:
    """MQTT topic levels may not contain wildcards or separators."""
    return "".join("_" if c in "+#/\0" else c for c in name) or "_"


def result_message(
    *,
    msg_id: str,
    device_id: str,
    source: str,
    file: str | None,
    sha256: str | None,
    captured_at: float | None,
    model: dict[str, str],
    result: OcrResult | None = None,
    error: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One message per input; a failure carries `error` instead of `text` and `lines`."""
    msg: dict[str, Any] = {
        "id": msg_id,
        "device_id": device_id,
        "source": source,
        "file": file,
        "sha256": sha256,
        "captured_at": iso(captured_at) if captured_at is not None else None,
        "processed_at": iso(),
        "model": model,
    }
    if result is not None:
        body = result.to_dict()
        msg.update(text=body["text"], lines=body["lines"], timings_ms=body["timings_ms"])
        if "orientation" in body:
            msg["orientation"] = body["orientation"]
    else:
        msg.update(error=error or {"message": "unknown error"}, timings_ms={})
    if extra:
        msg.update(extra)
    return msg
