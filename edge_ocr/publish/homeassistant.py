"""Home Assistant MQTT discovery: the device, its online status and the last text of each source.

Configs are retained under ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` and
published again on every connection (Home Assistant may have restarted; retained configs make that
harmless). Entities:

- ``binary_sensor`` *status* (device_class connectivity) from ``<p>/status``;
- ``binary_sensor`` *problem* (device_class problem) from the retained ``<p>/health``: on while the
  daemon is degraded (short of disk space, a read-only or missing folder), with the reason as an
  attribute; off again when it recovers;
- one ``sensor`` per source: *last text* from ``<p>/result/<source>`` (the text, or the error of a failed
  file, cut to Home Assistant's 255-character state limit), with the file name, id and processing time as
  attributes; unavailable while the device is offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from edge_ocr import __version__
from edge_ocr.publish.topics import Topics

__all__ = ["discovery_messages"]


def _object_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def discovery_messages(
    topics: Topics, sources: Sequence[str], discovery_prefix: str = "homeassistant"
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every retained discovery config for this device."""
    node = _object_id(f"edge-ocr-{topics.device_id}")
    device = {
        "identifiers": [node],
        "name": f"edge-ocr {topics.device_id}",
        "manufacturer": "edge-ocr",
        "model": "edge-ocr daemon",
        "sw_version": __version__,
    }
    availability = {
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    out: list[tuple[str, bytes]] = []
    status = {
        "name": "Status",
        "unique_id": f"{node}_status",
        "state_topic": topics.status,
        "payload_on": "online",
        "payload_off": "offline",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": device,
    }
    out.append((f"{discovery_prefix}/binary_sensor/{node}/status/config", _dump(status)))
    problem = {
        "name": "Problem",
        "unique_id": f"{node}_problem",
        "state_topic": topics.health,
        "value_template": "{{ 'ON' if value_json.problem else 'OFF' }}",
        "json_attributes_topic": topics.health,
        "json_attributes_template": "{{ {'condition': value_json.condition, 'reason': value_json.reason} "
        "| tojson }}",
        "device_class": "problem",
        "entity_category": "diagnostic",
        "device": device,
        **availability,
    }
    out.append((f"{discovery_prefix}/binary_sensor/{node}/problem/config", _dump(problem)))
    for source in sources:
        oid = f"last_text_{_object_id(source)}"
        sensor = {
            "name": f"Last text {source}",
            "unique_id": f"{node}_{oid}",
            "state_topic": topics.result(source),
            "value_template": "{{ (value_json.text if value_json.text is defined else "
            "'error: ' ~ value_json.error) | truncate(255, true, '') }}",
            "json_attributes_topic": topics.result(source),
            "json_attributes_template": "{{ {'file': value_json.file, 'id': value_json.id, "
            "'processed_at': value_json.processed_at} | tojson }}",
            "icon": "mdi:text-recognition",
            "device": device,
            **availability,
        }
        out.append((f"{discovery_prefix}/sensor/{node}/{oid}/config", _dump(sensor)))
    return out


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
