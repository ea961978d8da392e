"""``facecast demo``: the whole agent on a synthetic clip, with zero set-up.

Publishes to the MQTT broker at 127.0.0.1:1883 if one answers, else starts the embedded amqtt
broker on that address for the duration of the demo, and prints one compact line per event so
there is something to watch.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from agent.config import AgentConfig
from agent.pipeline import PipelineHooks, PipelineStats

log = logging.getLogger(__name__)


def summary_line(event: Mapping[str, Any]) -> str:
    """``seq 12  2 faces  happy 0.81 female 0.93 | neutral 0.55 male 0.88``."""
    faces = event.get("faces", [])
    parts = []
    for f in faces:
        emo, gen = f["emotion"], f["gender"]
        parts.append(f"{emo['label']} {emo['score']:.2f} {gen['label']} {gen['score']:.2f}")
    noun = "face" if len(faces) == 1 else "faces"
    return f"seq {event['seq']}  {len(faces)} {noun}  " + " | ".join(parts)


def printer(stream: TextIO | None = None) -> Callable[[dict[str, Any]], None]:
    def show(event: dict[str, Any]) -> None:
        out = stream or sys.stdout
        out.write(summary_line(event) + "\n")
        out.flush()

    return show


def run_demo(config: AgentConfig, *, frames: int, stream: TextIO | None = None) -> PipelineStats:
    """Run the demo source into MQTT (an existing broker or the embedded one)."""
    from agent.app import build_components, run_agent
    from agent.comms.embedded_broker import EmbeddedBroker, broker_reachable

    # Build (and validate) the model and detector before touching the network.
    parts = build_components(config)
    broker: EmbeddedBroker | None = None
    host, port = config.mqtt.host, config.mqtt.port
    if config.sink == "mqtt":
        if broker_reachable(host, port):
            log.info("using the MQTT broker at %s:%d", host, port)
        else:
            broker = EmbeddedBroker(host, port)
            broker.start()
    out = stream or sys.stdout
    out.write(
        f"facecast demo: {frames} frames -> {config.sink} {host}:{port} topic {config.mqtt.topic_prefix}/"
        f"{config.device_id}/{config.events.subtopic}{' (embedded broker)' if broker else ''}\n"
    )
    try:
        return run_agent(
            config, max_frames=frames, hooks=PipelineHooks(on_event=[printer(stream)]), components=parts
        )
    finally:
        if broker is not None:
            broker.stop()
