"""Home Assistant MQTT discovery against a real Mosquitto: config, re-send on HA birth, removal.

The payload is checked against what Home Assistant's MQTT discovery documents for device-based
discovery: topic ``<prefix>/device/<object_id>/config`` (object id ``[a-zA-Z0-9_-]``), the shared
``dev`` (identifiers) and ``o`` (origin name) mappings, and per component a platform ``p`` and a
``unique_id``; availability on the agent's status topic. Templates are rendered with Jinja2 (what
Home Assistant uses), so ``stopped`` is proven to read as unavailable.
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
from agent.homeassistant.discovery import HomeAssistantDiscovery
from agent.model_contract import EMOTIONS
from tests import brokers
from tests.agent_support import REPO, model_path  # noqa: F401
from tests.brokers import Subscriber, mosquitto, retained  # noqa: F401

DEVICE = "ha-dev"
CONFIG_TOPIC = "homeassistant/device/facecast_ha-dev/config"
SENSOR_PLATFORMS = {"sensor", "binary_sensor"}


def render(template: str, value: str) -> str:
    """A Home Assistant value template, rendered the way HA does (``value`` and ``value_json``)."""
    try:
        value_json = json.loads(value)
    except ValueError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value=value, value_json=value_json)


def agent_config(port: int, tmp_path) -> AgentConfig:
    return AgentConfig.from_mapping(
        {
            "device_id": DEVICE,
            "state_dir": tmp_path / "state",
            "mqtt": {"port": port, "reconnect_max_delay": 1},
        }
    )


def ha_birth_resends(ha: Subscriber, sub: Subscriber, before: int) -> bool:
    """Publish Home Assistant's birth message until the config arrives again (the agent's own
    subscription may still be on its way right after it connected)."""
    for _ in range(10):
        ha.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        if brokers.wait_for(lambda: len(sub.payloads(CONFIG_TOPIC)) > before, 1.0):
            return True
    return False


def check_discovery(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Asserts the documented required keys; returns the components."""
    assert re.fullmatch(r"homeassistant/device/[a-zA-Z0-9_-]+/config", topic)
    dev, origin = payload["dev"], payload["o"]
    cmps: dict[str, Any] = payload["cmps"]
    assert dev["ids"] and dev["name"]
    assert origin["name"]
    assert cmps
    (availability,) = payload["availability"]
    assert availability["topic"] == f"facecast/{DEVICE}/status"
    assert availability["payload_available"] == "online"
    assert availability["payload_not_available"] == "offline"
    tpl = availability["value_template"]
    assert render(tpl, "online") == "online"
    assert render(tpl, "offline") == "offline"
    assert render(tpl, "stopped") == "offline"  # a clean stop is unavailable too
    unique = [c["unique_id"] for c in cmps.values()]
    assert len(set(unique)) == len(unique)
    for key, comp in cmps.items():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", key)
        assert comp["p"] in SENSOR_PLATFORMS
        assert comp["unique_id"].startswith("facecast_ha-dev_")
        assert comp["state_topic"].startswith(f"facecast/{DEVICE}/")
        assert comp["name"] and comp["value_template"]
    return cmps


def test_discovery_is_retained_valid_resent_on_ha_birth_and_removable(mosquitto, tmp_path):  # noqa: F811
    config = agent_config(mosquitto.port, tmp_path)
    sub = Subscriber(mosquitto.port, ["homeassistant/device/#"])
    pub = MqttPublisher(config.mqtt, DEVICE, config.state_dir)
    pub.start()
    try:
        discovery = HomeAssistantDiscovery(pub, config, model_version="2026.11.28")
        discovery.start()
        assert brokers.wait_for(lambda: len(sub.payloads(CONFIG_TOPIC)) == 1, 10)
        payload = json.loads(sub.payloads(CONFIG_TOPIC)[0])
        cmps = check_discovery(CONFIG_TOPIC, payload)
        assert set(cmps) == {"faces", "emotion", "gender", "fps", "buffer"}
        assert cmps["emotion"]["options"] == list(EMOTIONS)  # the model's own labels, in its order
        stored = retained(mosquitto.port, CONFIG_TOPIC)
        assert stored is not None and json.loads(stored) == payload
        # The same ids every time: a restart must not create a second device in Home Assistant.
        again = HomeAssistantDiscovery(pub, config, model_version="2026.11.28").payload
        assert again == payload

        # Home Assistant restarts and announces itself: the config is sent again.
        ha = Subscriber(mosquitto.port, ["homeassistant/status"])
        assert ha_birth_resends(ha, sub, before=1)
        sent = len(sub.payloads(CONFIG_TOPIC))
        ha.client.publish("homeassistant/status", "offline", qos=1).wait_for_publish(5)
        ha.close()

        discovery.unregister()
        assert brokers.wait_for(lambda: sub.payloads(CONFIG_TOPIC)[-1] == b"", 10)
        assert len(sub.payloads(CONFIG_TOPIC)) == sent + 1  # 'offline' from HA sent nothing
        assert retained(mosquitto.port, CONFIG_TOPIC) is None  # gone from the broker
    finally:
        pub.close(timeout=3)
        sub.close()


def test_birth_resend_survives_a_broker_restart(tmp_path):
    """The HA-status subscription is renewed on reconnect (the broker forgot it)."""
    broker = brokers.Mosquitto(tmp_path / "mq")
    broker.start()
    config = agent_config(broker.port, tmp_path)
    pub = MqttPublisher(config.mqtt, DEVICE, config.state_dir)
    pub.start()
    sub = None
    try:
        HomeAssistantDiscovery(pub, config).start()
        assert brokers.wait_for(pub.is_connected, 10)
        broker.restart()  # no persistence: subscriptions and retained messages are gone
        assert brokers.wait_for(lambda: pub.stats()["reconnects"] >= 1 and pub.is_connected(), 15)
        sub = Subscriber(broker.port, [CONFIG_TOPIC])
        ha = Subscriber(broker.port, ["homeassistant/status"])
        assert ha_birth_resends(ha, sub, before=0)
        ha.close()
        check_discovery(CONFIG_TOPIC, json.loads(sub.payloads(CONFIG_TOPIC)[-1]))
    finally:
        pub.close(timeout=3)
        if sub is not None:
            sub.close()
        broker.stop()


@pytest.mark.slow
def test_agent_run_registers_and_its_state_topics_fill_every_sensor(mosquitto, tmp_path, model_path):  # noqa: F811
    """``facecast run`` announces the device; the retained presence/stats render in every sensor;
    ``facecast ha unregister`` removes it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["FACECAST_EVENTS__STATS_INTERVAL_S"] = "0.5"
    env["FACECAST_SOURCE__DEMO_FPS"] = "20"
    common = ["--device-id", DEVICE, "--state-dir", str(tmp_path / "s"), "--mqtt-port", str(mosquitto.port)]
    live = Subscriber(mosquitto.port, [f"facecast/{DEVICE}/#"])
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--source", "demo", "--max-frames", "40",
         "--model", str(model_path), *common],
        capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    config_raw = retained(mosquitto.port, CONFIG_TOPIC)
    assert config_raw, "no retained discovery config"
    cmps = check_discovery(CONFIG_TOPIC, json.loads(config_raw))
    live.close()
    for key, comp in cmps.items():
        assert retained(mosquitto.port, comp["state_topic"]) is not None, f"{key}: nothing retained"
        states = [p.decode() for p in live.payloads(comp["state_topic"])]
        values = [render(comp["value_template"], state) for state in states]
        # "None" is how Home Assistant is told "unknown" (e.g. no dominant emotion with no one in view)
        assert all(v != "" for v in values), key
        seen = [v for v in values if v != "None"]
        assert seen, f"{key}: never had a value ({states[-1][:200]})"
        if "options" in comp:
            assert set(seen) <= set(comp["options"]), (key, seen)
    assert retained(mosquitto.port, f"facecast/{DEVICE}/status") == "stopped"

    gone = subprocess.run(
        [sys.executable, "-m", "agent.cli", "ha", "unregister", *common],
        capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO), check=False,
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert retained(mosquitto.port, CONFIG_TOPIC) is None
