"""Device-based Home Assistant MQTT discovery (one retained config for the whole device).

Home Assistant's device discovery (``<prefix>/device/<object_id>/config``, HA 2024.11+) carries the
device (``dev``), the origin (``o``, required) and every entity under ``cmps`` (each with a
platform ``p`` and a ``unique_id``) in one message, so the device, availability and origin are
sent once instead of once per sensor. The sensors read state the agent publishes anyway: the
retained ``presence`` document (faces, dominant emotion, last gender) and the retained ``stats``.

Availability is the agent's own status topic. It carries ``online``/``offline``/``stopped``; Home
Assistant only knows available/not available, so a value template folds ``stopped`` (and anything
unexpected) into ``offline``.

The config is retained and re-sent whenever Home Assistant announces itself (``online`` on its
birth topic), which covers a Home Assistant that lost its retained state. An explicit unregister
publishes the empty retained payload that removes the device.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol, runtime_checkable

from agent import __version__
from agent.config.settings import AgentConfig
from agent.model_contract import EMOTIONS, GENDERS

log = logging.getLogger(__name__)

AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"
"""``stopped`` (clean exit) and ``offline`` (last will) both read as unavailable."""


@runtime_checkable
class TopicClient(Protocol):
    """What discovery needs from a publisher: full topics and a subscription (MQTT only)."""

    def publish_topic(
        self, topic: str, payload: Any, *, qos: int | None = None, retain: bool = False
    ) -> None: ...

    def subscribe(self, topic: str, callback: Any, qos: int = 1) -> None: ...


def agent_version() -> str:
    """The installed version: the distribution takes it from ``agent.__version__`` (pyproject.toml),
    which spares the service ``importlib.metadata`` (~3 MB resident)."""
    return __version__


def node_id(device_id: str) -> str:
    """The discovery object id: ``facecast_<device_id>`` reduced to ``[a-zA-Z0-9_-]``."""
    return "facecast_" + re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def discovery_topic(config: AgentConfig) -> str:
    return f"{config.homeassistant.discovery_prefix.strip('/')}/device/{node_id(config.device_id)}/config"


def _sensor(node: str, key: str, name: str, state_topic: str, template: str, **extra: Any) -> dict[str, Any]:
    return {
        "p": "sensor",
        "name": name,
        "unique_id": f"{node}_{key}",
        "state_topic": state_topic,
        "value_template": template,
        **extra,
    }


DOMINANT_COUNT_TEMPLATE = (
    "{% set ns = namespace(label=none, n=0) %}"
    "{% for label, n in value_json.emotion.items() %}"
    "{% if n is not none and n > ns.n %}{% set ns.label = label %}{% set ns.n = n %}{% endif %}"
    "{% endfor %}{{ ns.label }}"
)
"""The emotion most people of the last interval showed, among the counts that were not withheld."""


def _people_sensors(config: AgentConfig, node: str) -> dict[str, Any]:
    """``privacy.mode: aggregate``: sensors on the per-interval ``summary`` (null counts read as
    unknown), since presence, the per-person state, stays on the device."""
    summary = config.mqtt.topic(config.device_id, config.tracking.summary_subtopic)
    return {
        "people": _sensor(
            node,
            "people",
            "People (last interval)",
            summary,
            "{{ value_json.people }}",
            state_class="measurement",
            icon="mdi:account-group",
            json_attributes_topic=summary,
        ),
        "emotion": _sensor(
            node,
            "emotion",
            "Most common emotion (last interval)",
            summary,
            DOMINANT_COUNT_TEMPLATE,
            device_class="enum",
            options=list(EMOTIONS),
            icon="mdi:emoticon-outline",
        ),
    }


def discovery_payload(config: AgentConfig, model_version: str | None = None) -> dict[str, Any]:
    """The retained discovery config for this agent (see the module docstring)."""
    mqtt = config.mqtt
    dev_id = config.device_id
    node = node_id(dev_id)
    sw = agent_version()
    presence = mqtt.topic(dev_id, config.tracking.presence_subtopic)
    stats = mqtt.topic(dev_id, "stats")
    device: dict[str, Any] = {
        "ids": [node],
        "name": config.homeassistant.device_name or f"facecast {dev_id}",
        "mf": "facecast",
        "mdl": "facecast edge agent",
        "sw": sw if model_version is None else f"{sw} (model {model_version})",
    }
    cmps = (
        _people_sensors(config, node)
        if config.privacy.mode == "aggregate"
        else {
            "faces": _sensor(
                node,
                "faces",
                "Faces in view",
                presence,
                "{{ value_json.faces }}",
                state_class="measurement",
                icon="mdi:account-group",
            ),
            "emotion": _sensor(
                node,
                "emotion",
                "Dominant emotion",
                presence,
                "{{ value_json.dominant_emotion }}",
                device_class="enum",
                options=list(EMOTIONS),
                icon="mdi:emoticon-outline",
            ),
            "gender": _sensor(
                node,
                "gender",
                "Last gender",
                presence,
                "{{ value_json.last_gender }}",
                device_class="enum",
                options=list(GENDERS),
                icon="mdi:account",
            ),
        }
    )
    if not config.privacy.gender:
        cmps.pop("gender", None)
    cmps.update(
        {
            "fps": _sensor(
                node,
                "fps",
                "Processed FPS",
                stats,
                "{{ value_json.fps_processed }}",
                unit_of_measurement="fps",
                state_class="measurement",
                entity_category="diagnostic",
                icon="mdi:speedometer",
            ),
            "buffer": _sensor(
                node,
                "buffer",
                "Buffer depth",
                stats,
                "{{ value_json.buffer_depth }}",
                unit_of_measurement="events",
                state_class="measurement",
                entity_category="diagnostic",
                icon="mdi:tray-full",
            ),
        }
    )
    return {
        "dev": device,
        "o": {"name": "facecast", "sw": sw, "url": "https://github.com/facecast/facecast"},
        "availability": [
            {
                "topic": mqtt.topic(dev_id, "status"),
                "payload_available": "online",
                "payload_not_available": "offline",
                "value_template": AVAILABILITY_TEMPLATE,
            }
        ],
        "qos": 1,
        "cmps": cmps,
    }


class HomeAssistantDiscovery:
    """Publishes the discovery config at start and whenever Home Assistant comes online."""

    def __init__(self, client: TopicClient, config: AgentConfig, model_version: str | None = None) -> None:
        self._client = client
        self._config = config
        self.topic = discovery_topic(config)
        self.payload = discovery_payload(config, model_version)
        self.sent = 0

    def start(self) -> None:
        self.publish()
        self._client.subscribe(self._config.homeassistant.status_topic, self._on_ha_status)

    def publish(self) -> None:
        self._client.publish_topic(self.topic, self.payload, qos=1, retain=True)
        self.sent += 1
        log.info("Home Assistant discovery sent to %s", self.topic)

    def unregister(self) -> None:
        """Remove the device from Home Assistant: an empty retained config."""
        self._client.publish_topic(self.topic, "", qos=1, retain=True)
        log.info("Home Assistant discovery removed from %s", self.topic)

    def _on_ha_status(self, _topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            self.publish()
