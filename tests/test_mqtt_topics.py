"""Topics MQTT cannot carry: refused in the config, and never allowed to block the buffer (issue 27.4).

Against a real Mosquitto: it drops the connection on a topic with a control character, so one such
row used to wedge every event behind it, even after the device id was fixed.
"""

from __future__ import annotations

import json
import logging

import pytest

from agent.comms.buffer import DiskBuffer
from agent.comms.mqtt import MqttPublisher
from agent.config import AgentConfig
from agent.config.mqtt import MqttConfig
from agent.config.validation import ValidationError
from tests import brokers
from tests.agent_support import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("settings", "where", "needle"),
    [
        ({"device_id": "a\nb"}, "device_id", "control character U+000A"),
        ({"device_id": "a\x01b"}, "device_id", "control character U+0001"),
        ({"device_id": "a\x7fb"}, "device_id", "control character U+007F"),
        ({"device_id": "a\x00b"}, "device_id", "NUL"),
        ({"device_id": "cam+1"}, "device_id", "wildcard '+'"),
        ({"device_id": "cam#"}, "device_id", "wildcard '#'"),
        ({"device_id": "a/b"}, "device_id", "single topic level"),
        ({"device_id": "a\ufffeb"}, "device_id", "non-character U+FFFE"),
        ({"mqtt": {"topic_prefix": "$SYS/facecast"}}, "mqtt.topic_prefix", "must not start with '$'"),
        ({"mqtt": {"topic_prefix": "site//cams"}}, "mqtt.topic_prefix", "empty topic level"),
        ({"mqtt": {"topic_prefix": "site/+"}}, "mqtt.topic_prefix", "wildcard '+'"),
        ({"mqtt": {"topic_prefix": "site\tcams"}}, "mqtt.topic_prefix", "control character U+0009"),
        ({"mqtt": {"topic_prefix": "x" * 70_000}}, "mqtt.topic_prefix", "65535"),
        ({"mqtt": {"topic_prefix": "x" * 65_530}}, "events.subtopic", "65535"),  # fine alone, too long joined
        ({"events": {"subtopic": "frames\n"}}, "events.subtopic", "control character U+000A"),
        ({"tracking": {"presence_subtopic": "who/#"}}, "tracking.presence_subtopic", "wildcard '#'"),
        ({"tracking": {"summary_subtopic": "a//b"}}, "tracking.summary_subtopic", "empty topic level"),
        ({"homeassistant": {"discovery_prefix": "$ha"}}, "homeassistant.discovery_prefix", "'$'"),
        ({"homeassistant": {"status_topic": "ha/+/status"}}, "homeassistant.status_topic", "wildcard"),
    ],
)
def test_config_refuses_topics_mqtt_cannot_carry(settings, where, needle):
    with pytest.raises(ValidationError) as err:
        AgentConfig.from_mapping({"device_id": "cam1", **settings})
    assert [".".join(loc) for loc, _msg in err.value.errors] == [where]
    assert needle in str(err.value)


def test_config_still_accepts_ordinary_topics():
    config = AgentConfig.from_mapping(
        {
            "device_id": "Küche-2_cam",  # non-ASCII is fine: MQTT topics are UTF-8
            "mqtt": {"topic_prefix": "/home/facecast/"},  # outer slashes are forgiven, as before
            "events": {"subtopic": "frames/v1"},
        }
    )
    assert (
        config.mqtt.topic(config.device_id, config.events.subtopic) == "home/facecast/Küche-2_cam/frames/v1"
    )


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ('device_id: "a\\nb"\n', "device_id: contains the control character U+000A"),
        ('device_id: "a\\x01b"\n', "device_id: contains the control character U+0001"),
        ("mqtt:\n  topic_prefix: $SYS/facecast\n", "mqtt.topic_prefix: must not start with '$'"),
    ],
)
def test_cli_refuses_unpublishable_topics_with_one_line(tmp_path, yaml_text, needle):
    config = tmp_path / "facecast.yaml"
    config.write_text(yaml_text)
    proc = run_cli("run", "--config", str(config), "--source", "demo", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "s" / "buffer.sqlite3").exists()  # refused before anything was queued


BAD_TOPICS = {
    "facecast/a\nb/frames": "control character U+000A",  # what the old validation let through
    "facecast/a\x01b/frames": "control character U+0001",
    "$SYS/facecast/cam/frames": "starts with '$'",  # acknowledged by Mosquitto, seen by nobody
    "facecast/cam/+/frames": "wildcard '+'",  # the MQTT client itself refuses this one
}


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_rows_stored_under_bad_topics_never_block_the_buffer(mosquitto, tmp_path, caplog, protocol):
    """An earlier version stored events under topics the broker refuses; after the config is fixed,
    the good events behind them are delivered in order and the bad ones dropped, with reasons."""
    caplog.set_level(logging.DEBUG, logger="agent.comms")
    state = tmp_path / "state"
    device = "cam"
    good = f"facecast/{device}/frames"
    old = DiskBuffer(state / "buffer.sqlite3", 1000)  # written as the earlier version did
    for i, topic in enumerate(BAD_TOPICS):
        old.append(topic, json.dumps({"seq": 100 + i}).encode(), 1)
        old.append(good, json.dumps({"seq": i}).encode(), 1)
    for i in range(len(BAD_TOPICS), 10):
        old.append("facecast/a\nb/frames", b"{}", 1)  # many rows under the same bad topic
        old.append(good, json.dumps({"seq": i}).encode(), 1)
    old.close()

    sub = brokers.Subscriber(mosquitto.port, [good, "facecast/#"])
    cfg = MqttConfig(port=mosquitto.port, protocol=protocol, reconnect_min_delay=1, reconnect_max_delay=1)
    pub = MqttPublisher(cfg, device, state)
    try:
        pub.start()
        pub.publish("frames", {"seq": 10})  # this run's event queues behind the stored ones
        assert brokers.wait_for(lambda: len(sub.payloads(good)) >= 11, 10), pub.stats()
        assert sub.seqs(good) == list(range(11))  # all delivered, in order, nothing stuck
        assert brokers.wait_for(lambda: pub.stats()["buffered"] == 0, 5)  # acked rows are deleted
        stats = pub.stats()
        assert stats["reconnects"] == 0, "the broker never had to drop the connection"
        assert stats["undeliverable"] == 4 + (10 - len(BAD_TOPICS))
        reasons = stats["undeliverable_reasons"]
        for needle in BAD_TOPICS.values():
            assert sum(n for why, n in reasons.items() if needle in why) >= 1, reasons
        assert reasons["the topic contains the control character U+000A"] == 1 + (10 - len(BAD_TOPICS))
        assert {t for t, _p, _r in sub.messages} == {good, f"facecast/{device}/status"}
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        dropped = [m for m in warnings if m.startswith("dropping buffered event")]
        assert len(dropped) == len(BAD_TOPICS), "each reason is logged once, not once per row"
        pub.close(timeout=3)
    finally:
        pub.close(timeout=1)
        sub.close()
    closing = [r.getMessage() for r in caplog.records if "MQTT publisher closed" in r.getMessage()]
    assert closing and "unpublishable" in closing[-1] and "all events delivered" not in closing[-1]


def test_publish_refuses_a_topic_mqtt_cannot_carry(tmp_path):
    pub = MqttPublisher(MqttConfig(port=brokers.free_port()), "cam", tmp_path)
    pub.start()
    try:
        for subtopic, needle in [("a\nb", r"U\+000A"), ("x/#", "wildcard"), ("\x85", r"U\+0085")]:
            with pytest.raises(ValueError, match=needle):
                pub.publish(subtopic, {"x": 1})
        with pytest.raises(ValueError, match=r"starts with '\$'"):
            pub.publish_topic("$SYS/x", {"x": 1})
        assert pub.stats()["buffered"] == 0  # nothing was queued
    finally:
        pub.close(timeout=0.2)
    with pytest.raises(ValueError, match="control character"):
        MqttPublisher(MqttConfig(), "a\x01b", tmp_path)
