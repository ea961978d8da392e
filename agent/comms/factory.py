"""Pick the publisher for a sink name, so the CLI and the frame loop never import paho directly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TextIO

from agent.comms.base import Publisher
from agent.config.mqtt import MqttConfig


def create_publisher(
    sink: Literal["mqtt", "stdout"],
    mqtt: MqttConfig,
    device_id: str,
    state_dir: Path,
    stream: TextIO | None = None,
) -> Publisher:
    """A not-yet-started publisher: call ``start()`` then ``publish()``, and ``close()`` at the end.

    ``stream`` is only used by the stdout sink (default: ``sys.stdout`` at write time). The topic
    prefix of the stdout lines comes from ``mqtt.topic_prefix`` so both sinks name topics alike.
    """
    if sink == "mqtt":
        from agent.comms.mqtt import MqttPublisher  # paho is only needed for this sink

        return MqttPublisher(mqtt, device_id, state_dir)
    if sink == "stdout":
        from agent.comms.stdout import StdoutPublisher

        return StdoutPublisher(device_id, topic_prefix=mqtt.topic_prefix, stream=stream)
    raise ValueError(f"unknown sink {sink!r} (expected 'mqtt' or 'stdout')")
