"""StdoutPublisher, the factory, the embedded amqtt broker and MqttConfig validation."""

from __future__ import annotations

import io
import json
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.comms.base import Publisher
from agent.comms.embedded_broker import EmbeddedBroker, broker_reachable
from agent.comms.factory import create_publisher
from agent.comms.mqtt import MqttPublisher
from agent.comms.stdout import StdoutPublisher
from agent.config.mqtt import MqttConfig
from agent.config.validation import ValidationError
from tests import brokers


def test_stdout_json_lines(tmp_path, capsys):
    out = io.StringIO()
    pub = create_publisher("stdout", MqttConfig(topic_prefix="fc"), "cam1", tmp_path, stream=out)
    assert isinstance(pub, StdoutPublisher)
    assert isinstance(pub, Publisher)
    pub.start()
    pub.publish("frames", {"seq": 0, "faces": [{"emotion": "happy"}]})
    pub.publish("frames", '{"seq": 1}')
    pub.publish("events", "plain text")
    pub.close()
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"topic": "fc/cam1/frames", "payload": {"seq": 0, "faces": [{"emotion": "happy"}]}},
        {"topic": "fc/cam1/frames", "payload": {"seq": 1}},
        {"topic": "fc/cam1/events", "payload": "plain text"},
    ]
    assert pub.stats()["published"] == 3
    assert capsys.readouterr().out == ""  # nothing but events, and only on the given stream
    with pytest.raises(RuntimeError):
        pub.publish("frames", {"seq": 2})


def test_stdout_defaults_to_sys_stdout(tmp_path, capsys):
    pub = create_publisher("stdout", MqttConfig(), "cam1", tmp_path)
    pub.start()
    pub.publish("frames", {"seq": 7})
    pub.close()
    out = capsys.readouterr().out
    assert json.loads(out) == {"topic": "facecast/cam1/frames", "payload": {"seq": 7}}


def test_factory_mqtt_and_unknown(tmp_path):
    pub = create_publisher("mqtt", MqttConfig(), "cam1", tmp_path)
    assert isinstance(pub, MqttPublisher)
    with pytest.raises(ValueError, match="sink"):
        create_publisher("kafka", MqttConfig(), "cam1", tmp_path)  # type: ignore[arg-type]


def test_embedded_broker_round_trip():
    port = brokers.free_port()
    assert not broker_reachable("127.0.0.1", port, 0.2)
    got: list[bytes] = []
    arrived = threading.Event()
    with EmbeddedBroker("127.0.0.1", port):
        assert broker_reachable("127.0.0.1", port, 1.0)
        subscribed = threading.Event()
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"s-{uuid.uuid4().hex[:6]}")
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe("demo/#", 1)
        sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()

        def on_message(c, u, msg):
            got.append(bytes(msg.payload))
            arrived.set()

        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        assert subscribed.wait(10)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("demo/x", b"hello", qos=1).wait_for_publish(5)
        assert arrived.wait(10)
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
    assert got == [b"hello"]
    assert brokers.wait_for(lambda: not broker_reachable("127.0.0.1", port, 0.2), 5)


def test_embedded_broker_port_taken_raises():
    port = brokers.free_port()
    with EmbeddedBroker("127.0.0.1", port), pytest.raises(RuntimeError, match="failed to start"):
        EmbeddedBroker("127.0.0.1", port, start_timeout=5).start()


def test_mqtt_publisher_through_embedded_broker(tmp_path):
    """The demo path: our publisher against amqtt instead of Mosquitto."""
    port = brokers.free_port()
    with EmbeddedBroker("127.0.0.1", port):
        pub = MqttPublisher(MqttConfig(port=port), "democam", tmp_path)
        pub.start()
        for i in range(50):
            pub.publish("frames", {"seq": i})
        pub.close(timeout=10)
        assert pub.stats()["published"] == 50
        assert pub.stats()["buffered"] == 0


def test_config_rejects_unknown_keys_naming_them():
    with pytest.raises(ValidationError, match="hots"):
        MqttConfig.from_mapping({"hots": "x"})
    with pytest.raises(ValidationError, match="cafile"):
        MqttConfig.from_mapping({"tls": {"cafile": "/x"}})
    with pytest.raises(ValidationError, match="maxevents"):
        MqttConfig.from_mapping({"buffer": {"maxevents": 1}})


def test_config_defaults_and_coercions(tmp_path):
    cfg = MqttConfig()
    assert (cfg.host, cfg.port, cfg.keepalive, cfg.protocol, cfg.qos) == ("127.0.0.1", 1883, 60, "3.1.1", 1)
    assert cfg.topic_prefix == "facecast"
    assert cfg.effective_client_id("cam9") == "facecast-cam9"
    assert cfg.topic("cam9", "frames") == "facecast/cam9/frames"
    assert cfg.buffer.max_events == 100_000
    assert cfg.buffer.resolve_path(tmp_path) == tmp_path / "buffer.sqlite3"
    assert MqttConfig.from_mapping({"protocol": 5}).protocol == "5"
    assert MqttConfig(topic_prefix="/home/cams/").topic_prefix == "home/cams"
    with pytest.raises(ValidationError):
        MqttConfig(topic_prefix="a/#")
    with pytest.raises(ValidationError):
        MqttConfig(reconnect_min_delay=10, reconnect_max_delay=2)
    with pytest.raises(ValidationError):
        MqttConfig(protocol="4")  # type: ignore[arg-type]
