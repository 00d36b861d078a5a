"""The MQTT topic layout and the small values shared by the publishers.

Topics (``<p>`` is ``<topic_prefix>/<device_id>``):

- ``<p>/status``: retained ``online`` once the broker accepted the login, ``offline`` as last will and
  on clean stop.
- ``<p>/result/<source>``: QoS 1 JSON results (put in the outbox by the daemon).
- ``<p>/state/<source>/<region>``: retained JSON, the latest message of that camera region, valid or
  not (put in the outbox by the daemon): what Home Assistant's region sensors read, and what a client
  that connects later gets at once.
- ``<p>/stats``: periodic JSON.
- ``<p>/health``: retained JSON ``{"problem": bool, "condition", "reason", "storage"}``: whether the
  daemon is degraded (e.g. short of disk space) and why; cleared (``problem: false``) when it recovers.
- ``<p>/cmd/<verb>``: commands; each answer goes to ``<p>/cmd/<verb>/reply`` (one reply topic per verb,
  so a client waits on exactly the topic of the command it sent; ``cmd/+`` does not match it, so the
  device never receives its own replies).
- ``<topic_prefix>/ack/<device_id>``: retained JSON ``{"seq": N, "ids": [...]}`` written by the fleet's
  ingester (``edge-ocr ingest``) after each commit: the ids of this device's results it holds, and the
  highest outbox sequence stored. With ``mqtt.delivery: end_to_end`` the device deletes the results
  named. It lives outside the device's own tree so a site broker's bridge carries one pattern back
  (``topic <prefix>/ack/# in 1``) and a device's ACL can give it read-only access there.

The ingester subscribes to every device at once through the filters `result_filter`, `status_filter`,
`health_filter` and `stats_filter`; `device_of` reads the device id back out of a topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Command",
    "CommandHandler",
    "ConnectionState",
    "Topics",
    "ack_topic",
    "device_of",
    "health_filter",
    "result_filter",
    "stats_filter",
    "status_filter",
]

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True)
class Topics:
    """Every topic of one device."""

    prefix: str
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def ack(self) -> str:
        return ack_topic(self.prefix, self.device_id)

    @property
    def cmd_filter(self) -> str:
        return f"{self.base}/cmd/+"

    def result(self, source: str) -> str:
        return f"{self.base}/result/{source}"

    def region_state(self, source: str, region: str) -> str:
        return f"{self.base}/state/{source}/{region}"

    def cmd(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def reply(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}/reply"


def ack_topic(prefix: str, device_id: str) -> str:
    """The retained acknowledgement topic of one device (see the module docstring)."""
    return f"{prefix}/ack/{device_id}"


def result_filter(prefix: str) -> str:
    return f"{prefix}/+/result/#"


def status_filter(prefix: str) -> str:
    return f"{prefix}/+/status"


def stats_filter(prefix: str) -> str:
    return f"{prefix}/+/stats"


def health_filter(prefix: str) -> str:
    return f"{prefix}/+/health"


def device_of(prefix: str, topic: str) -> str | None:
    """The device id level of a ``<prefix>/<device_id>/...`` topic, or None for another tree."""
    head = f"{prefix}/"
    if not topic.startswith(head):
        return None
    device = topic[len(head) :].split("/", 1)[0]
    return device or None


@dataclass(frozen=True)
class Command:
    """A command received on ``<p>/cmd/<verb>``; `args` is the JSON object payload, or {} if none."""

    verb: str
    args: dict[str, Any]
    payload: bytes


# Called on the MQTT network thread: it must return quickly (set a flag, queue work). It returns the
# reply object ({"ok": ...} is added if missing), or None for a plain {"ok": true}. An exception becomes
# {"ok": false, "error": "..."}.
CommandHandler = Callable[[Command], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ConnectionState:
    """What a publisher reports for health and stats."""

    connected: bool
    last_error: str | None
    connects: int  # successful connections so far
    attempts: int  # connection attempts so far (refused or failed included)
    inflight: int  # messages sent and not yet acknowledged
    since: float | None  # time.time() of the last change of `connected`
