"""Private Mosquitto brokers and MQTT test subscribers for the comms tests (no mocks).

The ``mosquitto`` and ``persistent_mosquitto`` fixtures that start a :class:`Mosquitto` per test are
in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port nobody listens on right now (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Mosquitto:
    """A Mosquitto child process on a fixed port that a test can SIGKILL and restart on that port.

    ``persistence=True`` makes the broker autosave its state every second, so a *subscriber's*
    persistent session (clean_session=False) survives a SIGKILL + restart of the broker.
    ``extra`` lines are appended to the config (global options, or more listeners).
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistence: bool = False,
        anonymous: bool = True,
        extra: list[str] | None = None,
    ) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed")
        self.port = port or free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            f"persistence {'true' if persistence else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot write workdir
        if persistence:
            lines += [f"persistence_location {workdir}/", "autosave_interval 1", "autosave_on_changes false"]
        lines += extra or []  # e.g. a password_file, or a second (TLS) listener and its certs
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("broker already running")
        deadline = time.monotonic() + timeout
        while True:  # the old listening socket may linger for a moment after a kill
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
            proc = self.proc
            up = wait_for(lambda p=proc: port_open(self.port) or p.poll() is not None, 5)
            if up and proc.poll() is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start on {self.port}: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no Last Wills for the clients, sockets just die."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        wait_for(lambda: not port_open(self.port), 5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()




class Subscriber:
    """Collects messages on some topic filters; reconnects by itself (paho's loop) if the broker dies.

    With ``persistent=True`` it uses a fixed client id and clean_session=False, so a broker with
    persistence keeps queueing QoS 1 messages for it while it is disconnected.
    """

    def __init__(
        self,
        port: int,
        topics: list[str],
        persistent: bool = False,
        qos: int = 1,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.topics = topics
        self.qos = qos
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(1, 1)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("subscriber did not get SUBACK")

    def _on_connect(self, client, userdata, flags, rc, props):
        self.connects += 1
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, rcs, props):
        self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def seqs(self, topic: str) -> list[int]:
        return [json.loads(p)["seq"] for p in self.payloads(topic)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 3.0, auth: tuple[str, str] | None = None) -> str | None:
    """The retained payload on ``topic`` as a fresh subscriber sees it (None if nothing retained)."""
    got: list[str] = []
    done = threading.Event()

    def on_message(client, userdata, msg):
        if msg.retain:
            got.append(msg.payload.decode())
        done.set()

    def on_connect(client, userdata, flags, rc, props):
        client.subscribe(topic, 1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-ret-{uuid.uuid4().hex[:8]}")
    if auth is not None:
        client.username_pw_set(*auth)
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[-1] if got else None


def first_seen_order(seqs: list[int]) -> list[int]:
    """Each seq once, in the order it was first seen (duplicates after a reconnect are allowed)."""
    seen: set[int] = set()
    out: list[int] = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
