"""MqttPublisher against a real private Mosquitto: order, availability, outages, restarts, secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agent.comms.base import Publisher
from agent.comms.mqtt import MqttPublisher
from agent.config.mqtt import BufferConfig, MqttConfig
from agent.config.validation import Secret
from tests import brokers

DEVICE = "testcam"
FRAMES = f"facecast/{DEVICE}/frames"
STATUS = f"facecast/{DEVICE}/status"
REPO = Path(__file__).resolve().parents[1]


def make_config(port: int, **kw) -> MqttConfig:
    return MqttConfig(port=port, reconnect_min_delay=1, reconnect_max_delay=2, keepalive=10, **kw)


def test_is_a_publisher(tmp_path):
    assert isinstance(MqttPublisher(make_config(1883), DEVICE, tmp_path), Publisher)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_in_order_delivery_and_status(mosquitto: brokers.Mosquitto, tmp_path, protocol):
    sub = brokers.Subscriber(mosquitto.port, [FRAMES, STATUS])
    pub = MqttPublisher(make_config(mosquitto.port, protocol=protocol), DEVICE, tmp_path)
    try:
        pub.start()
        assert brokers.wait_for(lambda: b"online" in sub.payloads(STATUS), 10)
        assert brokers.retained(mosquitto.port, STATUS) == "online"
        n = 2000
        for i in range(n):
            pub.publish("frames", {"seq": i, "faces": []})
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= n, 20)
        assert sub.seqs(FRAMES) == list(range(n))  # no reconnect here: exactly once, in order
        pub.close(timeout=10)
        stats = pub.stats()
        assert stats["published"] == n
        assert stats["dropped"] == 0
        assert brokers.wait_for(lambda: sub.payloads(STATUS)[-1:] == [b"stopped"], 5)
        assert brokers.retained(mosquitto.port, STATUS) == "stopped"
    finally:
        pub.close(timeout=1)
        sub.close()


def test_qos0_skips_buffer_and_string_payloads(mosquitto: brokers.Mosquitto, tmp_path):
    stats_topic = f"facecast/{DEVICE}/stats"
    sub = brokers.Subscriber(mosquitto.port, [stats_topic, STATUS])
    pub = MqttPublisher(make_config(mosquitto.port), DEVICE, tmp_path)
    try:
        pub.start()
        pub.publish("stats", "dropped before connect", qos=0)  # may or may not be connected yet
        assert brokers.wait_for(pub.is_connected, 10)
        pub.publish("stats", '{"fps": 9.5}', qos=0)
        assert brokers.wait_for(lambda: b'{"fps": 9.5}' in sub.payloads(stats_topic), 5)
        s = pub.stats()
        assert s["qos0_published"] + s["qos0_dropped"] == 2
        assert s["buffered"] == 0
    finally:
        pub.close(timeout=2)
        sub.close()


def test_unreachable_at_start_buffers_then_replays_in_order(tmp_path, caplog):
    """Broker down at start: start() must not raise; events persist; the next run delivers them."""
    caplog.set_level(logging.INFO, logger="agent.comms")
    port = brokers.free_port()
    state = tmp_path / "state"
    pub = MqttPublisher(make_config(port), DEVICE, state)
    pub.start()  # nobody listens on `port`
    for i in range(300):
        pub.publish("frames", {"seq": i})
    assert pub.stats()["buffered"] == 300
    assert not pub.stats()["connected"]
    time.sleep(1.5)  # let paho fail to connect at least once
    pub.close(timeout=0.5)
    unreachable = [r for r in caplog.records if "unreachable (" in r.getMessage()]
    assert len(unreachable) == 1, "one line per outage, not one per retry"

    broker = brokers.Mosquitto(tmp_path / "broker", port=port)
    broker.start()
    sub = brokers.Subscriber(port, [FRAMES])
    pub2 = MqttPublisher(make_config(port), DEVICE, state)
    try:
        pub2.start()
        for i in range(300, 400):  # new events of the new run queue behind the old ones
            pub2.publish("frames", {"seq": i})
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 400, 20)
        assert sub.seqs(FRAMES) == list(range(400))
        pub2.close(timeout=5)
        assert pub2.stats()["buffered"] == 0
    finally:
        pub2.close(timeout=1)
        sub.close()
        broker.stop()


def test_drop_oldest_when_full_is_counted(mosquitto: brokers.Mosquitto, tmp_path):
    port = brokers.free_port()  # unreachable: everything stays in the buffer
    cfg = make_config(port, buffer=BufferConfig(max_events=50))
    pub = MqttPublisher(cfg, DEVICE, tmp_path)
    pub.start()
    for i in range(80):
        pub.publish("frames", {"seq": i})
    s = pub.stats()
    assert s["buffered"] == 50
    assert s["dropped"] == 30
    pub.close(timeout=0.2)

    # The survivors are the newest 50, delivered in order once a broker is there.
    sub = brokers.Subscriber(mosquitto.port, [FRAMES])
    pub2 = MqttPublisher(make_config(mosquitto.port, buffer=BufferConfig(max_events=50)), DEVICE, tmp_path)
    try:
        pub2.start()
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 50, 10)
        assert sub.seqs(FRAMES) == list(range(30, 80))
    finally:
        pub2.close(timeout=2)
        sub.close()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_broker_killed_mid_stream_every_seq_arrives_in_order(
    persistent_mosquitto: brokers.Mosquitto, tmp_path, protocol
):
    """SIGKILL the broker for ~4 s while publishing ~80 events/s; restart it on the same port.

    The subscriber holds a persistent session (clean_session=False) on an autosaving broker, so
    events the publisher re-sends before the subscriber is back are queued for it: the check is
    then honest and strict: every seq is seen at least once and first sightings are in order.
    """
    broker = persistent_mosquitto
    sub = brokers.Subscriber(broker.port, [FRAMES, STATUS], persistent=True)
    # Let the broker autosave the subscriber's session before we kill it.
    db = broker.workdir / "mosquitto.db"
    assert brokers.wait_for(db.exists, 5)
    time.sleep(1.2)
    pub = MqttPublisher(make_config(broker.port, protocol=protocol), DEVICE, tmp_path)
    stop = threading.Event()
    sent: list[int] = []

    def produce():
        i = 0
        while not stop.is_set():
            pub.publish("frames", {"seq": i})
            sent.append(i)
            i += 1
            time.sleep(1 / 80)

    producer = threading.Thread(target=produce)
    try:
        pub.start()
        assert brokers.wait_for(pub.is_connected, 10)
        producer.start()
        time.sleep(2.0)
        broker.kill()
        killed_at = len(sent)
        time.sleep(4.0)
        assert pub.stats()["buffered"] > 0  # events accepted while the broker is down
        broker.start()
        assert brokers.wait_for(lambda: pub.stats()["reconnects"] >= 1, 15)
        time.sleep(2.0)
        stop.set()
        producer.join()
        total = len(sent)
        assert total > killed_at + 200
        assert brokers.wait_for(lambda: len(set(sub.seqs(FRAMES))) >= total, 20)
        seen = sub.seqs(FRAMES)
        assert brokers.first_seen_order(seen) == list(range(total))
        assert brokers.wait_for(lambda: sub.payloads(STATUS)[-1:] == [b"online"], 5)
        assert brokers.retained(broker.port, STATUS) == "online"
        pub.close(timeout=5)
        assert pub.stats()["buffered"] == 0
        assert pub.stats()["reconnects"] == 1
    finally:
        stop.set()
        if producer.is_alive():
            producer.join()
        pub.close(timeout=1)
        sub.close()


@pytest.mark.slow
def test_unacked_inflight_resent_first_after_reconnect(persistent_mosquitto: brokers.Mosquitto, tmp_path):
    """Freeze the broker (SIGSTOP) so events go out unacknowledged, then SIGKILL it:
    those messages were never processed and must be re-sent, before any newer event.

    The paho thread is slowed right after on_connect, which is exactly where a sender that did
    not wait for paho's re-sends (it waits for the PUBACK of ``online``) would overtake them.
    """
    broker = persistent_mosquitto
    sub = brokers.Subscriber(broker.port, [FRAMES], persistent=True)
    assert brokers.wait_for((broker.workdir / "mosquitto.db").exists, 5)
    time.sleep(1.2)  # the subscriber's session is in the autosave
    pub = MqttPublisher(make_config(broker.port, max_inflight=32), DEVICE, tmp_path)
    try:
        pub.start()
        for i in range(20):
            pub.publish("frames", {"seq": i})
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 20, 10)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        for i in range(20, 30):  # fewer than the window: the sender has room left after reconnect
            pub.publish("frames", {"seq": i})
        assert brokers.wait_for(lambda: pub.stats()["inflight"] == 10, 5)
        client = pub._client
        assert client is not None
        on_connect = client.on_connect
        assert on_connect is not None

        def slow_on_connect(*args):
            on_connect(*args)
            time.sleep(0.3)

        client.on_connect = slow_on_connect
        broker.kill()
        for i in range(30, 150):
            pub.publish("frames", {"seq": i})
        broker.start()
        assert brokers.wait_for(lambda: len(set(sub.seqs(FRAMES))) >= 150, 20)
        assert brokers.first_seen_order(sub.seqs(FRAMES)) == list(range(150))
        pub.close(timeout=5)
        assert pub.stats()["buffered"] == 0
    finally:
        pub.close(timeout=1)
        sub.close()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from agent.comms.mqtt import MqttPublisher
    from agent.config.mqtt import MqttConfig
    pub = MqttPublisher(MqttConfig(port=int(sys.argv[1]), keepalive=5), sys.argv[2], Path(sys.argv[3]))
    pub.start()
    i = 0
    while True:
        pub.publish("frames", {"seq": i})
        if i == 0:
            while not pub.is_connected():
                time.sleep(0.01)
            print("ready", flush=True)
        i += 1
        time.sleep(0.01)
    """
)


def test_sigkill_of_publisher_process_publishes_offline_will(mosquitto: brokers.Mosquitto, tmp_path):
    sub = brokers.Subscriber(mosquitto.port, [STATUS])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(mosquitto.port), DEVICE, str(tmp_path / "child")],
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        assert brokers.wait_for(lambda: b"online" in sub.payloads(STATUS), 10)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # The kernel closes the socket: brokers.Mosquitto sees the loss at once and fires the will.
        assert brokers.wait_for(lambda: sub.payloads(STATUS)[-1:] == [b"offline"], 10)
        assert brokers.retained(mosquitto.port, STATUS) == "offline"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        sub.close()

    # Everything the killed process accepted is still on disk for its successor.
    from agent.comms.buffer import DiskBuffer

    buf = DiskBuffer(tmp_path / "child" / "buffer.sqlite3", 1000)
    rows = buf.peek(0, 1000)
    buf.close()
    ids = [r.id for r in rows]
    assert ids == sorted(ids)


def test_password_never_logged_nor_shown(mosquitto: brokers.Mosquitto, tmp_path, caplog, monkeypatch):
    secret = "hunter2-Sup3rSecret"
    caplog.set_level(logging.DEBUG)
    cfg = make_config(mosquitto.port, username="cam", password=Secret(secret))
    assert secret not in repr(cfg)
    assert secret not in str(cfg)
    assert secret not in json.dumps(cfg.to_dict(json=True))
    assert cfg.resolve_password() is not None
    pub = MqttPublisher(cfg, DEVICE, tmp_path)
    try:
        pub.start()
        assert brokers.wait_for(pub.is_connected, 10)  # anonymous broker accepts any credentials
        pub.publish("frames", {"seq": 0})
        pub.close(timeout=3)
    finally:
        pub.close(timeout=1)
    assert caplog.records, "expected some log output"
    for record in caplog.records:
        assert secret not in record.getMessage()
    assert secret not in caplog.text
    assert secret not in repr(pub.stats())


def test_password_file_and_systemd_credential(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    from_file = MqttConfig(password_file=pw).resolve_password({})
    assert from_file is not None
    assert from_file.get_secret_value() == "from-file"
    cred = tmp_path / "creds"
    cred.mkdir()
    (cred / "mqtt_password").write_text("from-systemd\n")
    got = MqttConfig().resolve_password({"CREDENTIALS_DIRECTORY": str(cred)})
    assert got is not None
    assert got.get_secret_value() == "from-systemd"
    assert MqttConfig().resolve_password({}) is None
    # Under systemd the credential wins over password_file (the root-only original).
    both = MqttConfig(password_file=pw).resolve_password({"CREDENTIALS_DIRECTORY": str(cred)})
    assert both is not None
    assert both.get_secret_value() == "from-systemd"
    # No credential in the directory: password_file is used.
    empty = tmp_path / "empty"
    empty.mkdir()
    only_file = MqttConfig(password_file=pw).resolve_password({"CREDENTIALS_DIRECTORY": str(empty)})
    assert only_file is not None
    assert only_file.get_secret_value() == "from-file"
    # An explicit password wins over both.
    env = {"CREDENTIALS_DIRECTORY": str(cred)}
    explicit = MqttConfig(password=Secret("x"), password_file=pw).resolve_password(env)
    assert explicit is not None
    assert explicit.get_secret_value() == "x"


def test_close_right_after_start_still_flushes(mosquitto, tmp_path):
    """A short run can end before the first CONNACK: close() waits for it within its timeout."""
    pub = MqttPublisher(make_config(mosquitto.port), DEVICE, tmp_path)
    pub.start()
    for i in range(10):
        pub.publish("frames", {"seq": i})
    pub.close(timeout=5)
    assert pub.stats()["published"] == 10
    assert brokers.retained(mosquitto.port, STATUS) == "stopped"


def test_close_during_outage_returns_at_once(tmp_path):
    pub = MqttPublisher(make_config(brokers.free_port()), DEVICE, tmp_path)
    pub.start()
    pub.publish("frames", {"seq": 0})
    assert brokers.wait_for(lambda: pub.stats()["connect_failures"] >= 1, 5)
    t0 = time.monotonic()
    pub.close(timeout=5)
    assert time.monotonic() - t0 < 2.5
    assert pub.stats()["published"] == 0
