"""End-to-end MQTT throughput: publish() -> SQLite buffer -> paho (QoS 1) -> broker -> subscriber.

Usage: ``python bench/bench_mqtt.py [--events 20000] [--port PORT]``. Without ``--port`` it starts
a private Mosquitto on a free port. Prints the accept rate (publish() calls/s, i.e. buffer commits)
and the end-to-end rate (until the subscriber has every event and the buffer is empty).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.comms.mqtt import MqttPublisher
from agent.config.mqtt import MqttConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    # Mosquitto drops QoS 1 messages for a subscriber with more than max_queued_messages (default
    # 1000) waiting: a bench subscriber that falls behind must not lose them.
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
        "max_queued_messages 1000000\n"
    )
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--inflight", type=int, default=64)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = None
        port = args.port
        if port is None:
            broker, port = _start_mosquitto(work)
        received = 0
        done = threading.Event()
        subscribed = threading.Event()
        device = f"bench{uuid.uuid4().hex[:6]}"

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            nonlocal received
            received += 1
            if received >= args.events:
                done.set()

        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-sub")
        sub.on_message = on_message
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.connect("127.0.0.1", port)
        sub.subscribe(f"facecast/{device}/frames", 1)
        sub.loop_start()
        subscribed.wait(10)

        pub = MqttPublisher(MqttConfig(port=port, max_inflight=args.inflight), device, work / "state")
        pub.start()
        while not pub.is_connected():
            time.sleep(0.01)
        event = {"seq": 0, "ts": 0.0, "faces": [{"box": [10, 20, 64, 64], "emotion": "happy", "p": 0.91}]}
        t0 = time.perf_counter()
        for i in range(args.events):
            event["seq"] = i
            pub.publish("frames", json.dumps(event))
        t_accept = time.perf_counter() - t0
        if not done.wait(max(60.0, args.events / 200)):
            print("timed out waiting for the subscriber", file=sys.stderr)
        pub.close(timeout=30)
        t_total = time.perf_counter() - t0
        sub.disconnect()
        sub.loop_stop()
        if broker is not None:
            broker.terminate()
            broker.wait(10)

    n = args.events
    print(f"events: {n}  received: {received}  left in buffer: {pub.stats()['buffered']}")
    print(f"accept (publish -> SQLite commit): {n / t_accept:,.0f} events/s")
    print(f"end to end at QoS 1 (publish -> subscriber, buffer drained): {n / t_total:,.0f} events/s")


if __name__ == "__main__":
    main()
