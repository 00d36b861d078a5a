"""Publishers: drain the durable outbox to MQTT (`mqtt.MqttPublisher`) or stdout (`stdout.StdoutPublisher`).

Both own one thread, take the stop event explicitly, and expose `state` (a `ConnectionState`) for health
and stats. `topics.Topics` is the topic layout of the MQTT contract; `homeassistant` builds the
discovery configs. paho is imported only by `mqtt`.
"""

from edge_ocr.publish.topics import Command, CommandHandler, ConnectionState, Topics

__all__ = ["Command", "CommandHandler", "ConnectionState", "Topics"]
