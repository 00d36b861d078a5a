"""Home Assistant discovery of camera regions, against a real mosquitto on 127.0.0.1 (see mqtt_broker.py).

The publisher helpers and fixtures come from test_publish_mqtt. The templates are rendered with jinja2,
the engine Home Assistant renders them with, in its immutable sandbox as Home Assistant does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import Mosquitto, Subscriber
from test_publish_mqtt import DEVICE, TOPICS, Publishers, mqtt_config, subscribe

from edge_ocr.config import HomeAssistantConfig
from edge_ocr.outbox import Outbox
from edge_ocr.publish import Command
from edge_ocr.publish.homeassistant import RegionSensor, config_filter, discovery_messages, node_id

NODE = node_id(TOPICS)
WATER = RegionSensor(
    "cellar", "water", numeric=True, unit="m³", device_class="water", state_class="total_increasing",
    precision=3,
)  # fmt: skip
LABEL = RegionSensor("cellar", "label", numeric=False)


@pytest.fixture
def publishers() -> Iterator[Publishers]:
    p = Publishers()
    yield p
    p.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "state" / "outbox.sqlite3") as ob:
        yield ob


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    subs: list[Subscriber] = []
    yield subs
    for s in subs:
        s.close()


def region_configs(region: RegionSensor) -> tuple[str, str]:
    """The topics of the sensor and of the problem binary_sensor of `region`."""
    state = TOPICS.region_state(region.source, region.region)
    messages = discovery_messages(TOPICS, [], regions=[region])
    topics = [t for t, p in messages if json.loads(p)["state_topic"] == state]
    sensor = next(t for t in topics if t.startswith("homeassistant/sensor/"))
    problem = next(t for t in topics if t.startswith("homeassistant/binary_sensor/"))
    return sensor, problem


def retained_configs(subs: list[Subscriber], broker: Mosquitto) -> dict[str, Any]:
    """Every retained discovery config on the broker, as a fresh subscriber receives them."""
    sub = subscribe(subs, broker, ["homeassistant/#"])
    # The broker sends a subscription's retained messages before it handles this client's next packet:
    # once the marker is back, every retained config has arrived.
    sub.client.publish("homeassistant/marker", b"end", qos=1)
    assert sub.wait_for(lambda m: any(x.topic == "homeassistant/marker" for x in m))
    return {m.topic: json.loads(m.payload) for m in sub.messages if m.retain and m.topic.endswith("/config")}


def render(template: str, payload: dict[str, Any]) -> str:
    jinja2_sandbox = pytest.importorskip("jinja2.sandbox")
    env = jinja2_sandbox.ImmutableSandboxedEnvironment()
    return str(env.from_string(template).render(value_json=payload, value=json.dumps(payload)))


def test_region_sensors_are_discovered_with_classes_and_a_problem_sensor(
    mosquitto, outbox, publishers, subscribers
) -> None:
    water_topic, water_problem_topic = region_configs(WATER)
    label_topic, label_problem_topic = region_configs(LABEL)
    wanted = {water_topic, water_problem_topic, label_topic, label_problem_topic}
    live = subscribe(subscribers, mosquitto, ["homeassistant/#"])
    cfg = mqtt_config(mosquitto, home_assistant=HomeAssistantConfig(enabled=True))
    pub, _ = publishers.start(cfg, outbox, sources=["cellar"], region_sensors=[WATER, LABEL])
    assert pub.wait_connected(10)
    assert live.wait_for(lambda m: wanted <= {x.topic for x in m})
    configs = retained_configs(subscribers, mosquitto)
    assert len(configs) == 2 + 1 + 4  # status, problem, last text of cellar, two per region

    water = configs[water_topic]
    state_topic = f"edge-ocr/{DEVICE}/state/cellar/water"
    assert TOPICS.region_state("cellar", "water") == state_topic
    assert water["state_topic"] == state_topic and water["json_attributes_topic"] == state_topic
    assert water["device_class"] == "water" and water["state_class"] == "total_increasing"
    assert water["unit_of_measurement"] == "m³" and water["suggested_display_precision"] == 3
    assert water["name"] == "cellar water" and water["availability_topic"] == TOPICS.status
    assert water["device"]["identifiers"] == [NODE]
    problem = configs[water_problem_topic]
    assert problem["state_topic"] == state_topic and problem["device_class"] == "problem"
    assert problem["unique_id"] != water["unique_id"]
    assert None not in water.values() and None not in problem.values()  # HA rejects `key: null`

    label = configs[label_topic]
    assert label["state_topic"] == TOPICS.region_state("cellar", "label")
    assert not {"device_class", "state_class", "unit_of_measurement"} & label.keys()
    assert configs[label_problem_topic]["device_class"] == "problem"

    # Stable per (device, source, region): the same ids whatever else is configured, and no two alike
    # even where the names flatten to the same characters.
    again = dict(discovery_messages(TOPICS, [], regions=[WATER]))
    assert json.loads(again[water_topic])["unique_id"] == water["unique_id"]
    a, b = RegionSensor("a_b", "c", numeric=False), RegionSensor("a", "b_c", numeric=False)
    assert region_configs(a)[0] != region_configs(b)[0]


def test_value_template_gives_the_value_or_the_last_accepted_one() -> None:
    configs = {t: json.loads(p) for t, p in discovery_messages(TOPICS, [], regions=[WATER, LABEL])}
    water = configs[region_configs(WATER)[0]]
    problem = configs[region_configs(WATER)[1]]
    label = configs[region_configs(LABEL)[0]]
    valid = {"region": "water", "text": "00123.456", "value": 123.456, "valid": True, "last_value": 123.4,
             "confidence": 0.98, "captured_at": "2024-05-01T10:00:00Z"}  # fmt: skip
    invalid = {"region": "water", "text": "00723.456", "value": None, "valid": False,
               "reason": "max_jump", "last_value": 123.456, "confidence": 0.91,
               "captured_at": "2024-05-01T10:01:00Z"}  # fmt: skip
    first_invalid = {**invalid, "last_value": None}

    assert render(water["value_template"], valid) == "123.456"
    assert render(water["value_template"], invalid) == "123.456"  # the last accepted value stands
    # No accepted value yet: "None", which Home Assistant's MQTT sensor turns into unknown.
    assert render(water["value_template"], first_invalid) == "None"
    assert render(water["value_template"], {k: v for k, v in invalid.items() if k != "last_value"}) == "None"

    assert render(problem["value_template"], valid) == "OFF"
    assert render(problem["value_template"], invalid) == "ON"
    assert json.loads(render(problem["json_attributes_template"], invalid)) == {"reason": "max_jump"}
    attributes = json.loads(render(water["json_attributes_template"], invalid))
    assert attributes == {"valid": False, "reason": "max_jump", "text": "00723.456", "confidence": 0.91,
                          "captured_at": "2024-05-01T10:01:00Z"}  # fmt: skip
    assert json.loads(render(water["json_attributes_template"], valid))["reason"] is None

    text = {"region": "label", "text": "B" * 300, "valid": True}
    assert render(label["value_template"], {**text, "text": "HALL 2"}) == "HALL 2"
    assert render(label["value_template"], text) == "B" * 255  # Home Assistant's state limit


def test_a_removed_region_loses_its_configs_and_commands_still_work(
    mosquitto, outbox, publishers, subscribers, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edge_ocr.publish.mqtt")
    cfg = mqtt_config(mosquitto, home_assistant=HomeAssistantConfig(enabled=True))
    region_a = RegionSensor("cellar", "a", numeric=True, unit="m³", device_class="water")
    region_b = RegionSensor("cellar", "b", numeric=False)
    a_topics, b_topics = set(region_configs(region_a)), set(region_configs(region_b))

    pub, _ = publishers.start(cfg, outbox, sources=["cellar"], region_sensors=[region_a, region_b])
    assert pub.wait_connected(10)
    live = subscribe(subscribers, mosquitto, ["homeassistant/#"])
    assert live.wait_for(lambda m: a_topics | b_topics <= {x.topic for x in m})
    publishers.stop(pub)
    before = retained_configs(subscribers, mosquitto)
    assert a_topics | b_topics <= before.keys()

    seen: list[Command] = []

    def on_command(cmd: Command) -> dict[str, Any]:
        seen.append(cmd)
        return {"pong": True}

    pub, _ = publishers.start(
        cfg, outbox, sources=["cellar"], region_sensors=[region_a], on_command=on_command
    )
    assert pub.wait_connected(10)
    assert live.wait_for(lambda _: all(live.payloads(t)[-1:] == [b""] for t in b_topics))

    after = retained_configs(subscribers, mosquitto)
    assert not b_topics & after.keys()
    assert after.keys() == before.keys() - b_topics  # A's, the device's and the source's stay
    assert all(after[t] for t in a_topics)
    assert config_filter(TOPICS) == f"homeassistant/+/{NODE}/+/config"
    removals = [r for r in caplog.records if "removing the Home Assistant config" in r.getMessage()]
    assert sorted(r.args[0] for r in removals) == sorted(b_topics)  # type: ignore[index]

    # The config subscription does not take over the commands: cmd/+ still reaches the handler. And a
    # live (not retained) config is someone's current publication, left alone: the publisher handles
    # it before the command, and would have sent the removal before the reply, on the same connection.
    cmd = subscribe(subscribers, mosquitto, [config_filter(TOPICS), TOPICS.reply("ping")])
    foreign = f"homeassistant/sensor/{NODE}/foreign/config"
    cmd.client.publish(foreign, b'{"name": "x"}', qos=1)
    cmd.client.publish(TOPICS.cmd("ping"), b'{"id": 1}', qos=1)
    assert cmd.wait_for(lambda _: bool(cmd.payloads(TOPICS.reply("ping"))))
    reply = json.loads(cmd.payloads(TOPICS.reply("ping"))[0])
    assert reply == {"verb": "ping", "id": 1, "pong": True, "ok": True}
    assert [c.verb for c in seen] == ["ping"]
    assert cmd.payloads(foreign) == [b'{"name": "x"}']
