"""Home Assistant MQTT discovery against a real Mosquitto, in both forms Home Assistant reads.

Payloads are checked against what Home Assistant's MQTT documentation lists:
* device form (HA 2024.11+): topic ``<prefix>/device/<object_id>/config``, the shared ``dev``
  (identifiers) and ``o`` (origin name) mappings, and per component a platform ``p`` and a
  ``unique_id``;
* entities form (every HA with MQTT event entities, 2023.8+): topic
  ``<prefix>/<component>/<node_id>/<object_id>/config``, each config with its own ``dev``, ``o``,
  ``unique_id`` and no ``p``;
and in both, only the options each platform documents (sensor, binary_sensor, event), with the ones
it requires (an event's ``event_types``). Templates are rendered with Jinja2 (what Home Assistant
uses) on the agent's real messages, so ``stopped`` is proven to read as unavailable, a new person
as ``person_appeared`` with emotion and gender, and an ``update`` as nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import jinja2
import pytest

from agent.comms.mqtt import MqttPublisher
from agent.config import AgentConfig
from agent.homeassistant.discovery import HomeAssistantDiscovery, messages
from agent.homeassistant.entities import EVENT_TYPES
from agent.model_contract import EMOTIONS, GENDERS
from tests import brokers
from tests.agent_support import REPO
from tests.brokers import Subscriber, retained

DEVICE = "ha-dev"
NODE = "facecast_ha-dev"
DEVICE_TOPIC = f"homeassistant/device/{NODE}/config"

COMMON_OPTIONS = {
    "name", "unique_id", "state_topic", "value_template", "availability", "dev", "o", "qos", "icon",
    "entity_category", "json_attributes_topic", "json_attributes_template", "enabled_by_default",
}  # fmt: skip
DOCUMENTED = {
    "sensor": COMMON_OPTIONS | {"device_class", "state_class", "unit_of_measurement", "options"},
    "binary_sensor": COMMON_OPTIONS | {"device_class", "payload_on", "payload_off"},
    "event": COMMON_OPTIONS | {"event_types", "device_class"},
}
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
}
DEVICE_KEYS = {"ids", "name", "mf", "mdl", "sw"}  # identifiers, name, manufacturer, model, sw_version
ORIGIN_KEYS = {"name", "sw", "url"}


def render(template: str, value: str) -> str:
    """A Home Assistant value template, rendered the way HA does (``value`` and ``value_json``)."""
    try:
        value_json = json.loads(value)
    except ValueError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value=value, value_json=value_json)


def agent_config(port: int, tmp_path, **sections: Any) -> AgentConfig:
    return AgentConfig.from_mapping(
        {
            "device_id": DEVICE,
            "state_dir": tmp_path / "state",
            "mqtt": {"port": port, "reconnect_max_delay": 1},
            **sections,
        }
    )


def check_shared(payload: dict[str, Any]) -> None:
    dev, origin = payload["dev"], payload["o"]
    assert dev["ids"] == [NODE] and dev["name"] and set(dev) <= DEVICE_KEYS
    assert origin["name"] and set(origin) <= ORIGIN_KEYS
    (availability,) = payload["availability"]
    assert availability["topic"] == f"facecast/{DEVICE}/status"
    assert availability["payload_available"] == "online"
    assert availability["payload_not_available"] == "offline"
    tpl = availability["value_template"]
    assert render(tpl, "online") == "online"
    assert render(tpl, "offline") == "offline"
    assert render(tpl, "stopped") == "offline"  # a clean stop is unavailable too


def check_entity(platform: str, key: str, config: dict[str, Any]) -> None:
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", key)
    assert platform in DOCUMENTED, platform
    assert REQUIRED[platform] <= set(config), (key, REQUIRED[platform] - set(config))
    assert set(config) <= DOCUMENTED[platform], (key, set(config) - DOCUMENTED[platform])
    assert config["unique_id"] == f"{NODE}_{key}"
    assert config["state_topic"].startswith(f"facecast/{DEVICE}/")
    assert config["name"] and config["value_template"]
    if platform == "event":
        assert config["event_types"] == list(EVENT_TYPES)


def entities_of(published: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """key -> (platform, config) from a form's messages (removals left out), each config checked."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for topic, payload in published.items():
        if payload in ("", b""):
            continue
        if topic == DEVICE_TOPIC:
            check_shared(payload)
            assert set(payload) == {"dev", "o", "availability", "qos", "cmps"}
            for key, comp in payload["cmps"].items():
                if set(comp) == {"p"}:
                    continue  # a component this configuration does not have: removed
                config = {k: v for k, v in comp.items() if k != "p"}
                check_entity(comp["p"], key, config)
                out[key] = (comp["p"], config)
            continue
        m = re.fullmatch(rf"homeassistant/([a-z_]+)/{NODE}/([a-zA-Z0-9_-]+)/config", topic)
        assert m, topic
        platform, key = m.groups()
        assert "p" not in payload and "cmps" not in payload
        check_shared(payload)
        options = {k: v for k, v in payload.items() if k not in ("availability", "qos")}
        check_entity(platform, key, options)
        out[key] = (platform, payload)
    unique = [c["unique_id"] for _, c in out.values()]
    assert len(set(unique)) == len(unique)
    return out


@pytest.mark.parametrize("form", ["device", "entities"])
@pytest.mark.parametrize(
    ("privacy", "keys"),
    [
        ({}, {"faces", "occupancy", "emotion", "person", "gender", "fps", "buffer"}),
        ({"gender": False}, {"faces", "occupancy", "emotion", "person", "fps", "buffer"}),
        ({"mode": "aggregate"}, {"people", "emotion", "fps", "buffer"}),
    ],
)
def test_both_forms_carry_the_keys_home_assistant_documents(tmp_path, form, privacy, keys):
    config = agent_config(1883, tmp_path, homeassistant={"discovery": form}, privacy=privacy)
    published = messages(config, model_version="2026.11.28")
    if form == "device":
        assert list(published) == [DEVICE_TOPIC]
    found = entities_of(published)
    assert set(found) == keys
    for _platform, entity in found.values():
        text = json.dumps(entity)
        if privacy.get("gender") is False or privacy.get("mode") == "aggregate":
            assert "gender" not in text and '"male"' not in text
        if privacy.get("mode") == "aggregate":
            assert "/presence" not in text and "/events" not in text
    if "emotion" in found:
        assert found["emotion"][1]["options"] == list(EMOTIONS)  # the model's own labels, in its order
    if "gender" in found:
        assert found["gender"][1]["options"] == list(GENDERS)
    if "occupancy" in found:
        occupancy = found["occupancy"][1]
        assert occupancy["device_class"] == "occupancy"
        # the people in view (ids, emotions, since when) as the entity's attributes
        assert occupancy["json_attributes_topic"] == f"facecast/{DEVICE}/presence"


def test_auto_is_the_entities_form(tmp_path):
    auto = agent_config(1883, tmp_path)
    assert auto.homeassistant.discovery == "auto"
    assert messages(auto) == messages(agent_config(1883, tmp_path, homeassistant={"discovery": "entities"}))


def wait_configs(sub: Subscriber, n: int, timeout: float = 10) -> dict[str, Any]:
    """The latest payload per discovery topic once ``n`` non-empty configs arrived."""

    def latest() -> dict[str, Any]:
        with sub.lock:
            return {t: (json.loads(p) if p else "") for t, p, _ in sub.messages if t.endswith("/config")}

    brokers.wait_for(lambda: sum(1 for p in latest().values() if p) >= n, timeout)
    return latest()


def retained_configs(port: int) -> dict[str, Any]:
    """Every discovery config retained on the broker, as a new subscriber (Home Assistant) sees them."""
    sub = Subscriber(port, ["homeassistant/+/+/config", "homeassistant/+/+/+/config"])
    brokers.wait_for(lambda: False, 0.5)  # retained messages come right after the SUBACK
    sub.close()
    with sub.lock:
        return {t: json.loads(p) for t, p, retain in sub.messages if retain and p}


def ha_birth_resends(ha: Subscriber, sub: Subscriber, topic: str, before: int) -> bool:
    """Publish Home Assistant's birth message until a config arrives again (the agent's own
    subscription may still be on its way right after it connected)."""
    for _ in range(10):
        ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        if brokers.wait_for(lambda: len(sub.payloads(topic)) > before, 1.0):
            return True
    return False


def test_discovery_is_retained_resent_on_ha_birth_and_removable(mosquitto, tmp_path):
    config = agent_config(mosquitto.port, tmp_path)
    sub = Subscriber(mosquitto.port, ["homeassistant/#"])
    pub = MqttPublisher(config.mqtt, DEVICE, config.state_dir)
    pub.start()
    faces = f"homeassistant/sensor/{NODE}/faces/config"
    try:
        discovery = HomeAssistantDiscovery(pub, config, model_version="2026.11.28")
        discovery.start()
        latest = wait_configs(sub, 7)
        found = entities_of(latest)
        assert len(found) == 7
        assert DEVICE_TOPIC not in latest  # nothing of the other form there, so nothing sent to it
        assert retained_configs(mosquitto.port) == {t: p for t, p in latest.items() if p}
        # The same ids every time: a restart must not create a second device in Home Assistant.
        assert HomeAssistantDiscovery(pub, config, model_version="2026.11.28").messages == discovery.messages

        # Home Assistant restarts and announces itself: the configs are sent again.
        ha = Subscriber(mosquitto.port, ["homeassistant/status"])
        assert ha_birth_resends(ha, sub, faces, before=1)
        sent = len(sub.payloads(faces))
        ha.client.publish("homeassistant/status", "offline", qos=1).wait_for_publish(5)
        ha.close()

        discovery.unregister()
        # Every config's clearing message has passed the broker before the broker is asked: the
        # publisher sends them one by one, and the faces sensor's may not be the last.
        configs = [t for t, p in latest.items() if p]
        assert brokers.wait_for(lambda: all(sub.payloads(t)[-1:] == [b""] for t in configs), 10)
        assert len(sub.payloads(faces)) == sent + 1  # 'offline' from HA sent nothing
        assert retained_configs(mosquitto.port) == {}  # gone from the broker
    finally:
        pub.close(timeout=3)
        sub.close()


def test_switching_form_hands_the_entities_over(mosquitto, tmp_path):
    """device -> entities -> device: each start finds what the other form left retained and hands it
    over as Home Assistant documents (migrate_discovery on the old topic, the new configs, then the
    old topic cleared), so one copy of each entity is left."""
    sub = Subscriber(mosquitto.port, ["homeassistant/#"])
    try:
        for step, (form, leftovers) in enumerate((("device", 0), ("entities", 1), ("device", 7))):
            config = agent_config(mosquitto.port, tmp_path, homeassistant={"discovery": form})
            with MqttPublisher(config.mqtt, DEVICE, config.state_dir) as pub:
                discovery = HomeAssistantDiscovery(pub, config)
                discovery.start()
                assert brokers.wait_for(lambda d=discovery, n=leftovers: len(d.handed_over) == n, 10), step
            live = retained_configs(mosquitto.port)
            if form == "device":
                assert set(live) == {DEVICE_TOPIC}, live
            else:
                assert DEVICE_TOPIC not in live and len(live) == 7, live
            for old in discovery.handed_over:
                sent = sub.payloads(old)
                # the hand-over, in Home Assistant's order: migrate, (new configs), clear
                assert sent[-2:] == [b'{"migrate_discovery":true}', b""], (old, sent[-3:])
    finally:
        sub.close()


def test_birth_resend_survives_a_broker_restart(tmp_path):
    """The HA-status subscription is renewed on reconnect (the broker forgot it)."""
    broker = brokers.Mosquitto(tmp_path / "mq")
    broker.start()
    config = agent_config(broker.port, tmp_path, homeassistant={"discovery": "device"})
    pub = MqttPublisher(config.mqtt, DEVICE, config.state_dir)
    pub.start()
    sub = None
    try:
        HomeAssistantDiscovery(pub, config).start()
        assert brokers.wait_for(pub.is_connected, 10)
        broker.restart()  # no persistence: subscriptions and retained messages are gone
        assert brokers.wait_for(lambda: pub.stats()["reconnects"] >= 1 and pub.is_connected(), 15)
        sub = Subscriber(broker.port, [DEVICE_TOPIC])
        ha = Subscriber(broker.port, ["homeassistant/status"])
        assert ha_birth_resends(ha, sub, DEVICE_TOPIC, before=0)
        ha.close()
        entities_of({DEVICE_TOPIC: json.loads(sub.payloads(DEVICE_TOPIC)[-1])})
    finally:
        pub.close(timeout=3)
        if sub is not None:
            sub.close()
        broker.stop()


@pytest.mark.slow
def test_agent_run_registers_and_its_messages_fill_every_entity(mosquitto, tmp_path, model_path):
    """``facecast run`` announces the device; the retained presence/stats render in every sensor,
    the occupancy goes ON then OFF, the event entity fires ``person_appeared`` and ``person_left``
    with emotion and gender; ``facecast ha unregister`` removes it all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["FACECAST_EVENTS__STATS_INTERVAL_S"] = "0.5"
    env["FACECAST_SOURCE__DEMO_FPS"] = "20"
    env["FACECAST_TRACKING__UPDATE_INTERVAL_S"] = "0.5"  # updates too, which the event entity skips
    common = ["--device-id", DEVICE, "--state-dir", str(tmp_path / "s"), "--mqtt-port", str(mosquitto.port)]
    live = Subscriber(mosquitto.port, [f"facecast/{DEVICE}/#", "homeassistant/#"])
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--source", "demo", "--max-frames", "40",
         "--model", str(model_path), *common],
        capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    latest = wait_configs(live, 7)
    found = entities_of(latest)
    live.close()
    assert set(found) == {"faces", "occupancy", "emotion", "person", "gender", "fps", "buffer"}
    for key, (platform, entity) in found.items():
        states = [p.decode() for p in live.payloads(entity["state_topic"])]
        values = [render(entity["value_template"], state) for state in states]
        if platform == "event":
            fired = [json.loads(v) for v in values if v]
            kinds = [json.loads(s)["type"] for s in states]
            assert len(fired) == kinds.count("new") + kinds.count("end") and "update" in kinds
            assert {f["event_type"] for f in fired} == set(EVENT_TYPES)
            for event in fired:
                assert event["emotion"] in EMOTIONS and event["gender"] in GENDERS
            continue
        assert retained(mosquitto.port, entity["state_topic"]) is not None, f"{key}: nothing retained"
        # "None" is how Home Assistant is told "unknown" (e.g. no dominant emotion with no one in view)
        assert all(v != "" for v in values), key
        seen = [v for v in values if v != "None"]
        assert seen, f"{key}: never had a value ({states[-1][:200]})"
        if "options" in entity:
            assert set(seen) <= set(entity["options"]), (key, seen)
        if platform == "binary_sensor":
            assert "ON" in seen and seen[-1] == "OFF", seen  # someone came, then left
    assert retained(mosquitto.port, f"facecast/{DEVICE}/status") == "stopped"

    gone = subprocess.run(
        [sys.executable, "-m", "agent.cli", "ha", "unregister", *common],
        capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert retained_configs(mosquitto.port) == {}


def test_unregister_without_a_broker_says_so_and_keeps_the_removal(tmp_path):
    """No broker: the empty configs stay in the buffer for the next run, and the command says it."""
    from tests.brokers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    common = ["--device-id", DEVICE, "--state-dir", str(tmp_path / "s"), "--mqtt-port", str(free_port())]
    gone = subprocess.run(
        [sys.executable, "-m", "agent.cli", "ha", "unregister", *common],
        capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert gone.returncode == 1, gone.stderr
    assert "broker not reached; the removal is kept and sent on the next run" in gone.stderr
    assert "Home Assistant device removed" not in gone.stdout
