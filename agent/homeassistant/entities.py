"""The entities an agent offers Home Assistant, whichever discovery form carries them.

Each entity reads state the agent publishes anyway, retained, so Home Assistant has a value as soon
as it subscribes: ``presence`` (who is in view), ``summary`` (per-interval counts), ``stats``
(health). The per-person ``events`` feed an ``event`` entity, the hook for automations ("when a
person appears"): its template turns ``new`` into ``person_appeared`` and ``end`` into
``person_left``, with emotion and gender as event attributes, and renders nothing for ``update``
(Home Assistant ignores an empty event payload).

What exists depends on ``privacy``: per-person entities only in ``events`` mode, the
last-interval counts in ``aggregate`` mode, gender only with ``privacy.gender``. Every entity any
configuration can have is in :func:`all_entities`, so a form can remove the ones the current
configuration no longer has (gender turned off after a run that had it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.config.settings import AgentConfig
from agent.model_contract import EMOTIONS, GENDERS

DOMINANT_COUNT_TEMPLATE = (
    "{% set ns = namespace(label=none, n=0) %}"
    "{% for label, n in value_json.emotion.items() %}"
    "{% if n is not none and n > ns.n %}{% set ns.label = label %}{% set ns.n = n %}{% endif %}"
    "{% endfor %}{{ ns.label }}"
)
"""The emotion most people of the last interval showed, among the counts that were not withheld."""

EVENT_TYPES = ("person_appeared", "person_left")


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: its object id (unique within the agent), platform and options
    (Home Assistant's MQTT option names, without device, origin and availability)."""

    key: str
    platform: str
    options: dict[str, Any] = field(default_factory=dict)


def person_event_template(gender: bool) -> str:
    """``new`` -> ``person_appeared``, ``end`` -> ``person_left`` (JSON with the event's
    attributes), anything else -> nothing."""
    g = ", 'gender': t.gender.label" if gender else ""
    appeared = f"{{'event_type': 'person_appeared', 'track_id': t.id, 'emotion': t.emotion.label{g}}}"
    left = (
        "{'event_type': 'person_left', 'track_id': t.id, 'emotion': t.emotion.label, "
        f"'dominant_emotion': t.emotion.dominant, 'duration_s': t.duration_s{g}}}"
    )
    return (
        "{% set t = value_json.track %}"
        f"{{% if value_json.type == 'new' %}}{{{{ {appeared} | tojson }}}}"
        f"{{% elif value_json.type == 'end' %}}{{{{ {left} | tojson }}}}{{% endif %}}"
    )


def _sensor(name: str, topic: str, template: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "state_topic": topic, "value_template": template, **options}


def entities(config: AgentConfig) -> list[Entity]:
    """The entities this configuration offers (see the module docstring)."""
    topic = config.mqtt.topic
    dev = config.device_id
    presence = topic(dev, config.tracking.presence_subtopic)
    stats = topic(dev, "stats")
    out: list[Entity] = []
    if config.privacy.mode == "aggregate":
        summary = topic(dev, config.tracking.summary_subtopic)
        out += [
            Entity("people", "sensor", _sensor(
                "People (last interval)", summary, "{{ value_json.people }}",
                state_class="measurement", icon="mdi:account-group", json_attributes_topic=summary,
            )),
            Entity("emotion", "sensor", _sensor(
                "Most common emotion (last interval)", summary, DOMINANT_COUNT_TEMPLATE,
                device_class="enum", options=list(EMOTIONS), icon="mdi:emoticon-outline",
            )),
        ]  # fmt: skip
    elif config.tracking.enabled:
        gender = config.privacy.gender
        out += [
            Entity("faces", "sensor", _sensor(
                "Faces in view", presence, "{{ value_json.faces }}",
                state_class="measurement", icon="mdi:account-group", json_attributes_topic=presence,
            )),
            Entity("occupancy", "binary_sensor", _sensor(
                "Occupancy", presence, "{{ 'ON' if value_json.faces > 0 else 'OFF' }}",
                device_class="occupancy", payload_on="ON", payload_off="OFF", json_attributes_topic=presence,
            )),
            Entity("emotion", "sensor", _sensor(
                "Dominant emotion", presence, "{{ value_json.dominant_emotion }}",
                device_class="enum", options=list(EMOTIONS), icon="mdi:emoticon-outline",
            )),
            Entity("person", "event", _sensor(
                "Person", topic(dev, config.tracking.events_subtopic), person_event_template(gender),
                event_types=list(EVENT_TYPES), icon="mdi:account-arrow-right",
            )),
        ]  # fmt: skip
        if gender:
            out.append(Entity("gender", "sensor", _sensor(
                "Last gender", presence, "{{ value_json.last_gender }}",
                device_class="enum", options=list(GENDERS), icon="mdi:account",
            )))  # fmt: skip
    if config.events.stats_interval_s > 0:
        diagnostic = {"state_class": "measurement", "entity_category": "diagnostic"}
        out += [
            Entity("fps", "sensor", _sensor(
                "Processed FPS", stats, "{{ value_json.fps_processed }}",
                unit_of_measurement="fps", icon="mdi:speedometer", **diagnostic,
            )),
            Entity("buffer", "sensor", _sensor(
                "Buffer depth", stats, "{{ value_json.buffer_depth }}",
                unit_of_measurement="events", icon="mdi:tray-full", **diagnostic,
            )),
        ]  # fmt: skip
    return out


ALL_PLATFORMS = {
    "people": "sensor",
    "faces": "sensor",
    "occupancy": "binary_sensor",
    "emotion": "sensor",
    "person": "event",
    "gender": "sensor",
    "fps": "sensor",
    "buffer": "sensor",
}
"""Every entity key any configuration can have, with its platform (for removing the ones gone)."""


def all_entities() -> dict[str, str]:
    return dict(ALL_PLATFORMS)
