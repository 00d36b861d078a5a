"""Home Assistant MQTT discovery: the device, its online status, the last text of each source, the regions.

Configs are retained under ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` and
published again on every connection (Home Assistant may have restarted; retained configs make that
harmless). Entities:

- ``binary_sensor`` *status* (device_class connectivity) from ``<p>/status``;
- ``binary_sensor`` *problem* (device_class problem) from the retained ``<p>/health``: on while the
  daemon is degraded (short of disk space, a read-only or missing folder), with the reason as an
  attribute; off again when it recovers;
- one ``sensor`` per source: *last text* from ``<p>/result/<source>`` (the text, or the error of a failed
  file, cut to Home Assistant's 255-character state limit), with the file name, id and processing time as
  attributes; unavailable while the device is offline;
- per camera region (`RegionSensor`), from its retained ``<p>/state/<source>/<region>``: a ``sensor`` with
  the value (numeric regions: the number when the reading is valid, else the last accepted value, else
  unknown; with unit, device and state class for the energy dashboard) or the text, and the reading's
  validity, reason, text, confidence and capture time as attributes; and a ``binary_sensor`` *problem*
  that is on while the latest reading is invalid, with its reason.

Every config lies under ``<discovery_prefix>/+/<node_id(topics)>/+/config``; the publisher empties the
retained ones there that the current configuration no longer makes (a removed source or region), so
Home Assistant deletes those entities.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_ocr import __version__
from edge_ocr.publish.topics import Topics

__all__ = ["RegionSensor", "config_filter", "discovery_messages", "node_id"]


@dataclass(frozen=True)
class RegionSensor:
    """The Home Assistant sensor of one camera region, as the caller resolved it from the config.

    For a text region (`numeric` false) the unit, device and state classes and precision are left out of
    the config: each of them makes Home Assistant expect a number and reject every text state.
    """

    source: str
    region: str
    numeric: bool  # the region has numeric rules: payload has "value" (number, or null when invalid)
    unit: str | None = None
    device_class: str | None = None  # water, gas, energy, ...
    state_class: str | None = None  # already resolved by the caller: total_increasing / measurement / total
    name: str | None = None  # default f"{source} {region}"
    icon: str | None = None
    precision: int | None = None  # suggested_display_precision, e.g. the meter's decimals


# Numeric state: a reading that broke a rule is not the value; the last accepted one stands in for it (a
# stale reading is better than a wrong one), and with none yet Home Assistant shows unknown (its MQTT
# sensor maps a rendered "None" to unknown). `is number` keeps a null or a string out of the state.
_NUMERIC_VALUE = (
    "{% if value_json.valid and value_json.get('value') is number %}{{ value_json.value }}"
    "{% elif value_json.get('last_value') is number %}{{ value_json.last_value }}"
    "{% else %}{{ None }}{% endif %}"
)
# Home Assistant refuses a state longer than 255 characters; leeway 0 because jinja2's default lets a
# string up to 5 characters longer through untruncated.
_TEXT_VALUE = (
    "{{ value_json.text | truncate(255, true, '', 0) if value_json.get('text') is string else None }}"
)
# .get(): a key left out of a message (no reason on a valid reading) is null, not a template error.
_REGION_ATTRIBUTES = (
    "{{ {'valid': value_json.get('valid'), 'reason': value_json.get('reason'), "
    "'text': value_json.get('text'), 'confidence': value_json.get('confidence'), "
    "'captured_at': value_json.get('captured_at')} | tojson }}"
)


def _object_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def node_id(topics: Topics) -> str:
    """The node id of this device in discovery topics."""
    return _object_id(f"edge-ocr-{topics.device_id}")


def config_filter(topics: Topics, discovery_prefix: str = "homeassistant") -> str:
    """The topic filter that matches every discovery config of this device (and only those)."""
    return f"{discovery_prefix}/+/{node_id(topics)}/+/config"


def _region_object_id(source: str, region: str) -> str:
    # Names may hold '.' and '_', which the object id alphabet cannot keep apart: ("a_b", "c") and
    # ("a", "b_c") would share one id. A digest of the exact pair keeps each id unique and stable
    # (the same pair, the same entity in Home Assistant's registry, whatever else the config holds).
    digest = hashlib.sha256(f"{source}\0{region}".encode()).hexdigest()[:8]
    return f"region_{_object_id(source)}_{_object_id(region)}_{digest}"


def discovery_messages(
    topics: Topics,
    sources: Sequence[str],
    discovery_prefix: str = "homeassistant",
    regions: Sequence[RegionSensor] = (),
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every retained discovery config for this device."""
    node = node_id(topics)
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
            "'error: ' ~ value_json.error) | truncate(255, true, '', 0) }}",
            "json_attributes_topic": topics.result(source),
            "json_attributes_template": "{{ {'file': value_json.file, 'id': value_json.id, "
            "'processed_at': value_json.processed_at} | tojson }}",
            "icon": "mdi:text-recognition",
            "device": device,
            **availability,
        }
        out.append((f"{discovery_prefix}/sensor/{node}/{oid}/config", _dump(sensor)))
    for region in regions:
        out += _region_messages(region, topics, node, discovery_prefix, device, availability)
    return out


def _region_messages(
    region: RegionSensor,
    topics: Topics,
    node: str,
    discovery_prefix: str,
    device: dict[str, Any],
    availability: dict[str, str],
) -> list[tuple[str, bytes]]:
    oid = _region_object_id(region.source, region.region)
    state_topic = topics.region_state(region.source, region.region)
    name = region.name or f"{region.source} {region.region}"
    sensor: dict[str, Any] = {
        "name": name,
        "unique_id": f"{node}_{oid}",
        "state_topic": state_topic,
        "value_template": _NUMERIC_VALUE if region.numeric else _TEXT_VALUE,
        "json_attributes_topic": state_topic,
        "json_attributes_template": _REGION_ATTRIBUTES,
    }
    optional: dict[str, object] = {"icon": region.icon}
    if region.numeric:
        optional.update(
            unit_of_measurement=region.unit,
            device_class=region.device_class,
            state_class=region.state_class,
            suggested_display_precision=region.precision,
        )
    # Home Assistant rejects a whole config with e.g. `device_class: null`: only keys that are set.
    sensor.update({k: v for k, v in optional.items() if v is not None})
    sensor.update(device=device, **availability)
    problem = {
        "name": f"{name} problem",
        "unique_id": f"{node}_{oid}_problem",
        "state_topic": state_topic,
        "value_template": "{{ 'OFF' if value_json.valid else 'ON' }}",
        "json_attributes_topic": state_topic,
        "json_attributes_template": "{{ {'reason': value_json.get('reason')} | tojson }}",
        "device_class": "problem",
        "entity_category": "diagnostic",
        "device": device,
        **availability,
    }
    return [
        (f"{discovery_prefix}/sensor/{node}/{oid}/config", _dump(sensor)),
        (f"{discovery_prefix}/binary_sensor/{node}/{oid}_problem/config", _dump(problem)),
    ]


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
