"""Soak: the agent for an hour on a looping source, the broker killed every 10 minutes, the state
partition nearly full. Prints what was delivered, what was dropped and why, duplicates, and the
slopes of RSS and open file descriptors, so "nothing lost without being counted" is a measured
figure, not a claim.

Everything runs on this machine: a private Mosquitto on a free port (persistent, so the
subscriber's QoS 1 session survives the outages), a tmpfs state directory (root only) filled with a
ballast file until ``--free-kib`` are left, and ``python -m agent.cli run`` on the demo source paced
at ``--fps``. The subscriber counts frame events by ``seq``; the agent's own figures come from its
final retained stats and its exit summary.

Usage (root): python bench/bench_soak.py [--minutes 60] [--fps 15] [--outage-every 600]
              [--outage-seconds 20] [--tmpfs-mib 48] [--free-kib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEVICE = "soak"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Mosquitto as a child process on one port, stopped and started again on that port."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
            "max_queued_messages 1000000\nmax_inflight_messages 0\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        # SIGTERM: Mosquitto writes its persistence file, so the subscriber's queued messages
        # survive; the agent sees the connection drop exactly as in an outage.
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.proc = None


class Subscriber:
    """A persistent QoS 1 session on the device's topics; frame events counted by ``seq``."""

    def __init__(self, port: int) -> None:
        self.seqs: list[int] = []
        self.buffered: list[tuple[str, bytes]] = []  # every message that went through the disk buffer
        self.stats: dict[str, Any] | None = None
        self.status: str | None = None
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-subscriber", clean_session=False
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"facecast/{DEVICE}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        sub = msg.topic.rsplit("/", 1)[-1]
        with self.lock:
            if sub not in ("stats", "status"):  # those two bypass the buffer (QoS 0 / retained status)
                self.buffered.append((msg.topic, bytes(msg.payload)))
            if sub == "frames":
                self.seqs.append(int(json.loads(msg.payload)["seq"]))
            elif sub == "stats":
                self.stats = json.loads(msg.payload)
            elif sub == "status":
                self.status = msg.payload.decode(errors="replace")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def proc_sample(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a live process."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    return rss_kib / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour; the first quarter (warm-up) is left out."""
    pts = samples[len(samples) // 4 :]
    if len(pts) < 3:
        return 0.0
    t = [p[0] for p in pts]
    v = [p[1] for p in pts]
    tm, vm = statistics.fmean(t), statistics.fmean(v)
    den = sum((x - tm) ** 2 for x in t)
    return 0.0 if den == 0 else 3600.0 * sum((x - tm) * (y - vm) for x, y in zip(t, v, strict=True)) / den


def fill(path: Path, leave_kib: int) -> int:
    """Write a ballast file until only ``leave_kib`` KiB are free on path's file system."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    size = max(0, free - leave_kib * 1024)
    with (path / "ballast").open("wb") as fh:
        chunk = b"\0" * (1 << 20)
        left = size
        while left > 0:
            fh.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--outage-every", type=float, default=600.0, help="seconds between broker kills")
    ap.add_argument("--outage-seconds", type=float, default=20.0)
    ap.add_argument("--tmpfs-mib", type=int, default=48, help="size of the state partition")
    ap.add_argument("--free-kib", type=int, default=1024, help="room left on it after the ballast")
    ap.add_argument("--sample-every", type=float, default=10.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_soak: needs root (it mounts a tmpfs for the state partition)")

    work = Path(tempfile.mkdtemp(prefix="facecast-soak-"))
    state = work / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.tmpfs_mib}m", "tmpfs", str(state)], check=True)
    broker: Broker | None = None
    sub: Subscriber | None = None
    agent: subprocess.Popen[str] | None = None
    try:
        ballast = fill(state, args.free_kib)
        port = free_port()
        broker = Broker(work, port)
        broker.start()
        sub = Subscriber(port)
        frames = int(args.minutes * 60 * args.fps)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "FACECAST_SOURCE__DEMO_FRAMES": str(frames),
            "FACECAST_SOURCE__DEMO_FPS": str(args.fps),
            "FACECAST_EVENTS__STATS_INTERVAL_S": "10",
        }
        cmd = [
            sys.executable, "-m", "agent.cli", "run", "--source", "demo", "--device-id", DEVICE,
            "--state-dir", str(state), "--mqtt-port", str(port), "--log-level", "INFO",
        ]  # fmt: skip
        agent_log = work / "agent.log"
        t0 = time.monotonic()
        with agent_log.open("w") as log:
            agent = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            rss: list[tuple[float, float]] = []
            fds: list[tuple[float, float]] = []
            outages = 0
            next_outage = t0 + args.outage_every
            next_sample = t0
            while agent.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    try:
                        r, f = proc_sample(agent.pid)
                        rss.append((now - t0, r))
                        fds.append((now - t0, f))
                    except (FileNotFoundError, ProcessLookupError):
                        pass
                    next_sample = now + args.sample_every
                if now >= next_outage and now - t0 < args.minutes * 60 - args.outage_seconds:
                    broker.stop()
                    time.sleep(args.outage_seconds)
                    broker.start()
                    outages += 1
                    next_outage += args.outage_every
                time.sleep(0.5)
        wall = time.monotonic() - t0
        time.sleep(3)  # the last QoS 1 deliveries
        text = agent_log.read_text()
        with sub.lock:
            seqs = list(sub.seqs)
            received = set(sub.buffered)
            stats = sub.stats or {}
            status = sub.status
        unique = set(seqs)
        pipe = stats.get("pipeline", stats)
        publisher = stats.get("publisher", {})
        summary = re.findall(r"MQTT publisher closed.*", text)
        tracebacks = text.count("Traceback")
        print(f"soak: {wall / 60:.1f} min, demo source at {args.fps:g} fps, {outages} broker outages of "
              f"{args.outage_seconds:g} s every {args.outage_every:g} s")  # fmt: skip
        print(f"state partition: tmpfs {args.tmpfs_mib} MiB, ballast {ballast / 2**20:.1f} MiB, "
              f"{args.free_kib} KiB left for the agent")  # fmt: skip
        print(f"agent exit code: {agent.returncode}; final status: {status}; "
              f"tracebacks in its log: {tracebacks}")  # fmt: skip
        print(f"frame events the agent made: {pipe.get('events')} (frames {pipe.get('frames')}, "
              f"processed {pipe.get('processed')})")  # fmt: skip
        print(f"delivered (distinct seq): {len(unique)}; duplicates: {len(seqs) - len(unique)}")
        if unique:
            span = max(unique) - min(unique) + 1
            print(f"seq span {span}: {span - len(unique)} seq numbers never arrived")
        print(f"dropped by the agent: {publisher.get('dropped', 0)} "
              f"{publisher.get('dropped_by_reason', {})}; "
              f"undeliverable {publisher.get('undeliverable', 0)}; rejected {publisher.get('rejected', 0)}; "
              f"left on disk {publisher.get('buffered', 0)}")  # fmt: skip
        for line in summary:
            print(f"agent exit summary: {line}")
        said = re.search(r"(\d+) event\(s\) delivered", summary[-1]) if summary else None
        if said:
            # Retained messages (presence) come again on every resubscribe: count each once.
            lost = int(said.group(1)) - len(received)
            print(f"buffered messages the agent counted as delivered: {said.group(1)}; distinct ones the "
                  f"subscriber received: {len(received)}; delivered but never received: {lost}")  # fmt: skip
        if rss:
            print(f"RSS MiB: start {rss[0][1]:.1f}, peak {max(v for _, v in rss):.1f}, end {rss[-1][1]:.1f}, "
                  f"slope {slope_per_hour(rss):+.2f} MiB/h (after warm-up)")  # fmt: skip
            print(f"open fds: start {int(fds[0][1])}, max {int(max(v for _, v in fds))}, "
                  f"end {int(fds[-1][1])}, "
                  f"slope {slope_per_hour(fds):+.2f} per hour")  # fmt: skip
        print(f"agent log: {agent_log}")
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=30)
        if sub is not None:
            sub.close()
        if broker is not None:
            broker.stop()
        subprocess.run(["umount", str(state)], check=False)


if __name__ == "__main__":
    main()
