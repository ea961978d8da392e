"""systemd notifications over a real UNIX datagram socket, and the heartbeat while a camera is gone."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

import tests.agent_support as support
from agent.errors import SourceError
from agent.sources.live import LatestFrameSource
from agent.watchdog import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def received(sock) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out


def test_outside_systemd_everything_is_a_no_op():
    notifier = SystemdNotifier(environ={})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    notifier.heartbeat()


def test_ready_status_stopping(notify_socket):
    path, sock = notify_socket
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": str(path)})
    notifier.ready()
    notifier.status("42 frames")
    notifier.stopping()
    assert received(sock) == ["READY=1", "STATUS=42 frames", "STOPPING=1"]


def test_watchdog_pings_at_half_the_deadline(notify_socket):
    path, sock = notify_socket
    now = [100.0]
    notifier = SystemdNotifier(
        environ={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}, clock=lambda: now[0]
    )
    assert notifier.watchdog_interval == 1.0
    for t in (100.0, 100.4, 100.9, 101.0, 101.5, 102.2):
        now[0] = t
        notifier.heartbeat()
    assert received(sock) == ["WATCHDOG=1"] * 3  # at 100.0, 101.0 and 102.2


def test_no_watchdog_configured_means_no_pings(notify_socket):
    path, sock = notify_socket
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": str(path)})
    notifier.heartbeat()
    assert received(sock) == []


def test_live_source_ticks_while_the_camera_is_gone():
    def opener():
        raise SourceError("camera unplugged")

    class Once:
        def __init__(self):
            self.n = 0

        def read(self):
            self.n += 1
            return None  # dies at once

        def release(self):
            pass

    first = [True]

    def flaky():
        if first[0]:
            first[0] = False
            return Once()
        return opener()

    source = LatestFrameSource("gone", flaky, backoff_initial=0.05, backoff_max=0.1, idle_tick=0.1)
    start = time.monotonic()
    ticks = []
    for frame in source:
        assert frame.idle and frame.image is None
        ticks.append(time.monotonic() - start)
        if len(ticks) == 4:
            break
    source.close()
    assert ticks[-1] < 1.5  # four idle ticks in ~0.4 s: the loop keeps turning without frames


def test_cli_run_notifies_systemd(notify_socket, model_path, tmp_path):
    path, sock = notify_socket
    proc = support.run_cli(
        "run",
        "--source",
        "demo",
        "--sink",
        "stdout",
        "--model",
        str(model_path),
        "--state-dir",
        str(tmp_path / "state"),
        "--max-frames",
        "5",
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "FACECAST_SOURCE__DEMO_FRAMES": "5"},
    )
    assert proc.returncode == 0, proc.stderr
    messages = received(sock)
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert "WATCHDOG=1" in messages


def test_idle_ticks_stop_while_a_device_read_hangs():
    """A camera read that never returns must starve the watchdog, not feed it with idle ticks."""
    import threading

    release = threading.Event()

    class Hangs:
        def __init__(self):
            self.n = 0

        def read(self):
            self.n += 1
            if self.n > 2:
                release.wait(10)  # a driver stuck inside the read
                return None
            return np.zeros((8, 8, 3), dtype=np.uint8)

        def release(self):
            pass

    source = LatestFrameSource("hung", Hangs, idle_tick=0.05, stall_after=0.3)
    seen = []
    start = time.monotonic()
    it = iter(source)
    stop_at = start + 1.2

    def consume():
        for frame in it:
            seen.append((time.monotonic() - start, frame.idle))
            if time.monotonic() > stop_at:
                break

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(1.6)
    stalled = source.stalled()
    release.set()
    source.close()
    assert stalled
    idle_times = [ts for ts, idle in seen if idle]
    assert idle_times, "idle ticks must flow before the stall limit"
    assert max(idle_times) < 0.3 + 0.2  # none after the read has hung past stall_after
