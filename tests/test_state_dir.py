"""The state directory through the real CLI: one agent per directory (a real second process), a
full disk at start and while running (a real tmpfs), a corrupt buffer file, and a clean
``stopped`` whatever fails on the way out."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.app import Components, build_components, run_agent
from agent.config import load_config
from agent.sources import FrameSource
from agent.state_dir import LOCK_FILE, StateDirBusyError, StateDirLock
from tests import brokers
from tests.agent_support import REPO, assert_one_line_error, run_cli

MiB = 1024 * 1024


def write_config(path: Path, frames: int, fps: float, **extra: Any) -> Path:
    """A demo run with only frame events in the buffer (no tracking, no discovery), so the test
    can count them exactly against the ``pipeline stopped`` line."""
    doc = {
        "source": {"uri": "demo", "demo_frames": frames, "demo_fps": fps},
        "tracking": {"enabled": False},
        "homeassistant": {"enabled": False},
        "mqtt": {"reconnect_min_delay": 1, "reconnect_max_delay": 1, "keepalive": 10},
        **extra,
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def agent_cmd(config: Path, state: Path, port: int, device: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--mqtt-port",
        str(port),
        "--device-id",
        device,
        *extra,
    ]


def agent_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["PYTHONPATH"] = str(REPO)
    return env


class Stderr:
    """Collects a child's stderr lines as they come (to act on a log line while it runs)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def text(self) -> str:
        self._thread.join(5)
        return "\n".join(self.lines)


def start_agent(config: Path, state: Path, port: int, device: str) -> tuple[subprocess.Popen[str], Stderr]:
    """``facecast run`` at INFO in a child, its stderr read as it comes."""
    proc = subprocess.Popen(
        agent_cmd(config, state, port, device, "--log-level", "INFO"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=agent_env(),
    )
    return proc, Stderr(proc)


# -- the lock ----------------------------------------------------------------------------------

_HOLDER = """
import sys
from pathlib import Path
from agent.state_dir import StateDirLock
StateDirLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
    """A real second process holds the lock; SIGKILL frees it (no stale lock after a crash)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=agent_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirBusyError) as err:
            StateDirLock(tmp_path).acquire()
        assert str(tmp_path) in str(err.value) and f"pid {holder.pid}" in str(err.value)
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(holder.pid)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    with StateDirLock(tmp_path) as lock:  # the kernel released it with the process
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        assert lock.path == tmp_path / LOCK_FILE


def test_second_agent_on_one_state_dir_is_refused_at_once(model_path, mosquitto: brokers.Mosquitto, tmp_path):
    """A manual run beside the service: the second is refused with one line naming the directory
    and the first one's pid, before it loads a model or touches the broker; the first one keeps
    its MQTT session (same client id: they used to knock each other off) and its buffer."""
    state = tmp_path / "state"
    device = "twin"
    status = f"facecast/{device}/status"
    config = write_config(tmp_path / "c.yaml", frames=100_000, fps=5)
    first, err = start_agent(config, state, mosquitto.port, device)
    try:
        assert brokers.wait_for(lambda: brokers.retained(mosquitto.port, status, 0.5) == "online", 60)
        t0 = time.monotonic()
        second = run_cli(
            "run", "--config", str(config), "--state-dir", str(state), "--mqtt-port", str(mosquitto.port),
            "--device-id", device, timeout=60,
        )  # fmt: skip
        took = time.monotonic() - t0
        line = assert_one_line_error(second, f"state_dir {state}", f"pid {first.pid}")
        assert "in use by another facecast agent" in line
        assert second.returncode == 1
        assert "loading" not in second.stderr  # refused before any model or camera
        assert took < 15, f"refused after {took:.1f} s"
        time.sleep(2.0)  # had it connected, the broker would have dropped the first one by now
        assert first.poll() is None
        assert brokers.retained(mosquitto.port, status) == "online"
        assert sum("MQTT connected to" in line for line in err.lines) == 1
        assert not err.has("connection lost")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        assert brokers.retained(mosquitto.port, status) == "stopped"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)


# -- a full disk -------------------------------------------------------------------------------


def test_full_disk_at_start_is_one_line_and_non_zero(model_path, small_disk, tmp_path):
    """The state dir of an earlier run, on a partition that filled up while the agent was
    stopped: one line naming the directory and saying it is full (it used to be "unexpected
    OperationalError: database or disk is full", naming nothing)."""
    disk = small_disk(1 * MiB)
    state = disk.path / "state"
    port = brokers.free_port()  # no broker: the first run keeps its events on disk
    config = write_config(tmp_path / "c.yaml", frames=5, fps=0)
    ok = run_cli("run", "--config", str(config), "--state-dir", str(state), "--mqtt-port", str(port))
    assert ok.returncode == 0, ok.stderr
    assert (state / "buffer.sqlite3").exists()
    disk.fill()
    proc = run_cli("run", "--config", str(config), "--state-dir", str(state), "--mqtt-port", str(port))
    assert proc.returncode == 1
    assert_one_line_error(proc, f"state_dir {state}", "is full")


def test_full_disk_at_start_fresh_state_dir(small_disk, tmp_path):
    disk = small_disk(1 * MiB)
    disk.fill()
    state = disk.path / "state"
    config = write_config(tmp_path / "c.yaml", frames=5, fps=0)
    proc = run_cli("run", "--config", str(config), "--state-dir", str(state), "--mqtt-port", "1")
    assert proc.returncode == 1
    assert_one_line_error(proc, str(state), "is full")


@pytest.mark.slow
def test_disk_fills_while_running_nothing_crashes_and_every_event_is_accounted_for(
    model_path, small_disk, persistent_mosquitto: brokers.Mosquitto, tmp_path
):
    """The broker is down and the 1 MiB partition under the state dir fills with buffered events
    (the agent used to die with "cannot rollback - no transaction is active" and lose an event).
    Now the oldest are evicted and counted; when the broker is back, delivered + dropped equals
    the events the agent accepted, the drops are in the stats payload, a warning and the exit
    summary, and ``stopped`` is announced."""
    broker = persistent_mosquitto
    device = "fullcam"
    frames_t, status_t, stats_t = (f"facecast/{device}/{t}" for t in ("frames", "status", "stats"))
    sub = brokers.Subscriber(broker.port, [frames_t, status_t], persistent=True)
    assert brokers.wait_for((broker.workdir / "mosquitto.db").exists, 5)
    time.sleep(1.2)  # the subscriber's session is autosaved before the broker goes
    broker.kill()
    disk = small_disk(1 * MiB)
    state = disk.path / "state"
    config = write_config(tmp_path / "c.yaml", frames=900, fps=0, events={"stats_interval_s": 0.5})
    proc, err = start_agent(config, state, broker.port, device)
    try:
        assert brokers.wait_for(lambda: err.has(f"(the file system of {state} is full)"), 120), err.text()
        broker.start()
        assert proc.wait(180) == 0, err.text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = err.text()
    assert "Traceback" not in log and "facecast: error" not in log
    m = re.search(r"pipeline stopped: \d+ frames, (\d+) events", log)
    assert m, log[-2000:]
    accepted = int(m.group(1))
    closed = r"MQTT publisher closed; (\d+) event\(s\) delivered, (\d+) dropped \(disk_full: (\d+)\)"
    m = re.search(closed, log)
    assert m, log[-2000:]
    dropped = int(m.group(2))
    assert dropped == int(m.group(3)) > 0
    try:
        assert brokers.wait_for(lambda: len(set(sub.seqs(frames_t))) >= accepted - dropped, 20)
        delivered = set(sub.seqs(frames_t))
        assert len(delivered) + dropped == accepted
        assert brokers.wait_for(lambda: sub.payloads(status_t)[-1:] == [b"stopped"], 10)
        stats = json.loads(brokers.retained(broker.port, stats_t) or "{}")
        assert stats["publisher"]["dropped_by_reason"]["disk_full"] > 0
        assert stats["publisher"]["dropped"] == stats["publisher"]["dropped_by_reason"]["disk_full"]
    finally:
        sub.close()
    assert len([line for line in log.splitlines() if " WARNING agent.comms.buffer" in line]) <= 4


# -- a corrupt buffer ---------------------------------------------------------------------------


def test_corrupt_buffer_moved_aside_and_the_agent_starts(model_path, tmp_path):
    """Power loss left garbage in buffer.sqlite3: the agent used to fail every start with "file is
    not a database" (and systemd's start limit then kept it down for good)."""
    state = tmp_path / "state"
    state.mkdir()
    buffer = state / "buffer.sqlite3"
    garbage = os.urandom(12_288)
    buffer.write_bytes(garbage)
    config = write_config(tmp_path / "c.yaml", frames=5, fps=0)
    port = brokers.free_port()
    proc = run_cli("run", "--config", str(config), "--state-dir", str(state), "--mqtt-port", str(port))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    aside = list(state.glob("buffer.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    assert str(buffer) in errors[0] and str(aside[0]) in errors[0]
    assert "kept on disk for the next run" in proc.stderr  # the fresh buffer took this run's events


# -- the way out -------------------------------------------------------------------------------


class SourceThatFailsToClose:
    """A real demo source whose ``close`` raises, as a camera unplugged mid-run can."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self.name = source.name
        self.live = source.live

    def __iter__(self) -> Any:
        return iter(self._source)

    def stats(self) -> dict[str, int]:
        return self._source.stats()

    def close(self) -> None:
        self._source.close()
        raise OSError(19, "No such device")


def test_stopped_is_published_whatever_fails_on_the_way_out(
    model_path, mosquitto: brokers.Mosquitto, tmp_path, caplog
):
    config = load_config(
        write_config(tmp_path / "c.yaml", frames=10, fps=0),
        overrides={"state_dir": tmp_path / "state", "mqtt.port": mosquitto.port, "device_id": "exitcam"},
    )
    status = "facecast/exitcam/status"
    sub = brokers.Subscriber(mosquitto.port, ["facecast/exitcam/frames", status])
    parts = build_components(config)
    parts = Components(SourceThatFailsToClose(parts.source), parts.detector, parts.classifier)
    try:
        with pytest.raises(OSError, match="No such device"):
            run_agent(config, components=parts)
        assert brokers.wait_for(lambda: sub.payloads(status)[-1:] == [b"stopped"], 10)
        assert brokers.retained(mosquitto.port, status) == "stopped"
        assert len(sub.payloads("facecast/exitcam/frames")) == 10  # flushed before it closed
    finally:
        sub.close()
    assert any("closing the source failed on the way out" in r.getMessage() for r in caplog.records)
    StateDirLock(tmp_path / "state").acquire().release()  # and the lock was let go
