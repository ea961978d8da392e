"""Home Assistant MQTT discovery, in either of the two forms Home Assistant reads.

* ``entities``: one retained config per entity on ``<prefix>/<platform>/<node>/<key>/config``, each
  repeating the device, origin and availability. Every Home Assistant with MQTT event entities
  (2023.8 and later) reads it.
* ``device``: one retained config on ``<prefix>/device/<node>/config`` carrying the device
  (``dev``), origin (``o``) and every entity under ``cmps`` (each with its platform ``p``). Fewer
  messages, but only Home Assistant 2024.11 and later know it: 2024.3 logs ``Integration device is
  not supported`` and creates nothing.
* ``auto`` (the default) is ``entities``: Home Assistant has no way to tell an MQTT client its
  version, and the per-entity form is the one every version in use understands.

Both forms use the same unique ids, so switching from one to the other keeps the entities. At start
the agent listens on the other form's topics; a retained config there (an earlier run used that
form) is handed over the way Home Assistant documents it: ``{"migrate_discovery": true}`` on the old
topic, the new form's configs, then an empty retained message on the old topic. Only then: an
empty message on a topic Home Assistant 2025 knows through the other form makes it log a
"conflicting discovery message" for every entity, so nothing is cleared blindly. Entities the
configuration no longer has are removed (an empty config in the entities form, a component reduced
to its platform in the device form).

Availability is the agent's own status topic. It carries ``online``/``offline``/``stopped``; Home
Assistant only knows available/not available, so a value template folds ``stopped`` (and anything
unexpected) into ``offline``.

The configs are retained and re-sent whenever Home Assistant announces itself (``online`` on its
birth topic), which covers a Home Assistant that lost its retained state. ``facecast ha
unregister`` clears every topic either form may have used.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Literal, Protocol, runtime_checkable

from agent import __version__
from agent.config.settings import AgentConfig
from agent.homeassistant.entities import Entity, all_entities, entities

log = logging.getLogger(__name__)

AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"
"""``stopped`` (clean exit) and ``offline`` (last will) both read as unavailable."""

Form = Literal["device", "entities"]


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


def discovery_form(config: AgentConfig) -> Form:
    """``auto`` -> ``entities`` (see the module docstring)."""
    return "device" if config.homeassistant.discovery == "device" else "entities"


def discovery_topic(config: AgentConfig) -> str:
    """The device form's topic."""
    return f"{config.homeassistant.discovery_prefix.strip('/')}/device/{node_id(config.device_id)}/config"


def entity_topic(config: AgentConfig, platform: str, key: str) -> str:
    """The entities form's topic for one entity."""
    prefix = config.homeassistant.discovery_prefix.strip("/")
    return f"{prefix}/{platform}/{node_id(config.device_id)}/{key}/config"


def _shared(config: AgentConfig, model_version: str | None) -> dict[str, Any]:
    """Device, origin, availability and QoS: once per device form, in every config of the other."""
    sw = agent_version()
    node = node_id(config.device_id)
    return {
        "dev": {
            "ids": [node],
            "name": config.homeassistant.device_name or f"facecast {config.device_id}",
            "mf": "facecast",
            "mdl": "facecast edge agent",
            "sw": sw if model_version is None else f"{sw} (model {model_version})",
        },
        "o": {"name": "facecast", "sw": sw, "url": "https://github.com/facecast/facecast"},
        "availability": [
            {
                "topic": config.mqtt.topic(config.device_id, "status"),
                "payload_available": "online",
                "payload_not_available": "offline",
                "value_template": AVAILABILITY_TEMPLATE,
            }
        ],
        "qos": 1,
    }


def _component(node: str, entity: Entity) -> dict[str, Any]:
    return {"unique_id": f"{node}_{entity.key}", **entity.options}


def discovery_payload(config: AgentConfig, model_version: str | None = None) -> dict[str, Any]:
    """The device form's config. Entities the configuration does not have are listed by their
    platform alone, which is how Home Assistant is told to remove them."""
    node = node_id(config.device_id)
    current = {e.key: e for e in entities(config)}
    cmps: dict[str, Any] = {
        key: {"p": entity.platform, **_component(node, entity)} for key, entity in current.items()
    }
    cmps.update({key: {"p": platform} for key, platform in all_entities().items() if key not in current})
    return {**_shared(config, model_version), "cmps": cmps}


def entity_payloads(config: AgentConfig, model_version: str | None = None) -> dict[str, dict[str, Any] | str]:
    """The entities form: topic -> config, and an empty payload (removal) for every entity the
    configuration does not have."""
    node = node_id(config.device_id)
    shared = _shared(config, model_version)
    out: dict[str, dict[str, Any] | str] = {
        entity_topic(config, platform, key): "" for key, platform in all_entities().items()
    }
    for entity in entities(config):
        out[entity_topic(config, entity.platform, entity.key)] = {**_component(node, entity), **shared}
    return out


def messages(config: AgentConfig, model_version: str | None = None) -> dict[str, dict[str, Any] | str]:
    """Topic -> payload of the configured form (empty payloads remove)."""
    if discovery_form(config) == "device":
        return {discovery_topic(config): discovery_payload(config, model_version)}
    return entity_payloads(config, model_version)


def other_form_topics(config: AgentConfig) -> list[str]:
    """The topics of the form not in use, where a switch of form finds what to hand over."""
    if discovery_form(config) == "device":
        return [entity_topic(config, platform, key) for key, platform in all_entities().items()]
    return [discovery_topic(config)]


class HomeAssistantDiscovery:
    """Publishes the discovery configs at start and whenever Home Assistant comes online."""

    def __init__(self, client: TopicClient, config: AgentConfig, model_version: str | None = None) -> None:
        self._client = client
        self._config = config
        self.form = discovery_form(config)
        self.messages = messages(config, model_version)
        self.sent = 0
        self.handed_over: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.publish()
        self._client.subscribe(self._config.homeassistant.status_topic, self._on_ha_status)
        for topic in other_form_topics(self._config):
            self._client.subscribe(topic, self._on_other_form)

    def _on_other_form(self, topic: str, payload: bytes) -> None:
        """A retained config of the form not in use: hand its entities over (module docstring)."""
        if not payload.strip() or b"migrate_discovery" in payload:
            return  # nothing there, or our own hand-over message coming back
        with self._lock:
            if topic in self.handed_over:
                return
            self.handed_over.append(topic)
        log.info("Home Assistant: moving the entities of %s to the %s form", topic, self.form)
        self._client.publish_topic(topic, {"migrate_discovery": True}, qos=1)
        self.publish()
        self._client.publish_topic(topic, "", qos=1, retain=True)

    def publish(self) -> None:
        for topic, payload in self.messages.items():
            self._client.publish_topic(topic, payload, qos=1, retain=True)
        self.sent += 1
        configs = sum(1 for p in self.messages.values() if p != "")
        log.info("Home Assistant discovery sent (%s form, %d config(s))", self.form, configs)

    def unregister(self) -> None:
        """Remove the device from Home Assistant: an empty retained config on every topic either
        form may have used, the device form's last (by then Home Assistant has removed the
        entities, so it has nothing of the other form to complain about)."""
        topics = [entity_topic(self._config, p, key) for key, p in all_entities().items()]
        topics.append(discovery_topic(self._config))
        for topic in topics:
            self._client.publish_topic(topic, "", qos=1, retain=True)
        log.info("Home Assistant discovery removed (%d topics cleared)", len(topics))

    def _on_ha_status(self, _topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            self.publish()
