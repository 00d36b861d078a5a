"""The result message contract: stable ids, topics and the JSON payload published for each input.

Every result carries ``id`` (stable: the same input gives the same id, so consumers drop duplicates by
it) and ``device_id``. With ``mqtt.delivery: end_to_end`` it also carries ``seq``, its outbox sequence,
added when it is sent (`with_seq`): the fleet's ingester acknowledges a device's results by the highest
sequence it stored. `REQUIRED` is what a consumer may rely on; `problems` says what a message lacks.
"""

from __future__ import annotations

import json
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
        for key in ("orientation", "rejected"):  # present only when there is one: as `ocr --json` has them
            if key in body:
                msg[key] = body[key]
    else:
        msg.update(error=error or {"message": "unknown error"}, timings_ms={})
    if extra:
        msg.update(extra)
    return msg


# The fields a consumer may rely on, with their JSON types (seq only with delivery: end_to_end).
REQUIRED: dict[str, type] = {"id": str, "device_id": str}
OPTIONAL: dict[str, type] = {"seq": int}


def with_seq(payload: bytes, seq: int) -> bytes:
    """The JSON object `payload` with its outbox sequence; any other payload is returned unchanged.

    Added at send time because the sequence is the outbox's, known only once the result is stored.
    The same message sent again gets the same bytes.
    """
    try:
        msg = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(msg, dict):
        return payload
    msg["seq"] = seq
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()


def problems(msg: object) -> str | None:
    """Why `msg` (parsed JSON) is not a result message a consumer can store, or None when it is."""
    if not isinstance(msg, dict):
        return f"not a JSON object but {type(msg).__name__}"
    for key, kind in REQUIRED.items():
        value = msg.get(key)
        if value is None:
            return f"missing {key}"
        if not isinstance(value, kind) or not value:
            return f"{key} is not a non-empty {kind.__name__}"
    for key, kind in OPTIONAL.items():
        value = msg.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{key} is not an {kind.__name__}"
    return None
