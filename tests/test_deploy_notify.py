"""systemd ``Type=notify`` + ``WatchdogSec=`` contract of ``facecast run``, over a REAL datagram socket.

The unit in ``systemd/facecast.service`` relies on three behaviours, checked here end to end against the
real CLI in a subprocess (no systemd needed: we play systemd's side of ``$NOTIFY_SOCKET``):

* ``READY=1`` arrives once start-up is done, before the first event is published;
* ``WATCHDOG=1`` arrives at least once per ``WatchdogSec`` while frames flow, and STOPS when the frame
  loop hangs. The hang is real, not simulated: the stdout sink writes each event synchronously in the
  loop thread, so when we stop reading the agent's stdout the pipe fills and the loop blocks in
  ``write()``, exactly like a wedged sink or driver call would block it. Reading again un-wedges it
  and the pings must come back;
* ``STOPPING=1`` arrives on SIGTERM, and the process then exits 0.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.agent_support import clip

pytestmark = [pytest.mark.deploy, pytest.mark.slow]

WATCHDOG_S = 3.0
"""WatchdogSec for the test: long enough for a starved 2-core CI box, short enough to watch a hang."""
PACE_BYTES_S = 16384.0
"""~25 events/s of stdout read while frames should flow: 1500 frames outlast the test."""


@dataclass
class Observed:
    """What arrived, in arrival order; socket messages are always read before stdout lines."""

    messages: list[tuple[float, str]] = field(default_factory=list)
    lines: list[tuple[float, dict[str, object]]] = field(default_factory=list)

    def times(self, state: str, since: float = 0.0) -> list[float]:
        return [t for t, m in self.messages if state in m.split("\n") and t >= since]


class Harness:
    """Plays systemd: owns the notify socket, reads the agent's stdout only when told to."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        self.sock = sock
        self.proc = proc
        assert proc.stdout is not None
        self.stdout = proc.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self._partial = b""
        self.seen = Observed()

    def pump(self, seconds: float, *, drain: bool, until: str | None = None, paced: bool = True) -> bool:
        """Collect for ``seconds`` (or until ``until`` arrives). With ``drain=False`` stdout is left
        unread, so the agent's pipe fills up and its frame loop blocks. ``paced`` reads stdout at
        most ``PACE_BYTES_S``: back-pressure holds a fast machine to a steady frame rate, so the clip
        lasts the whole test wherever it runs (a slower machine is simply slower)."""
        deadline = time.monotonic() + seconds
        budget, last = 0.0, time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            now = time.monotonic()
            budget, last = min(budget + PACE_BYTES_S * (now - last), 16384.0), now
            want_stdout = drain and (not paced or budget >= 4096)
            fds = [self.sock.fileno(), self.stdout.fileno()] if want_stdout else [self.sock.fileno()]
            ready, _, _ = select.select(fds, [], [], min(left, 0.05 if drain else 0.2))
            # The socket first: a datagram sent before a line was written is already queued.
            self._read_socket()
            if until is not None and self.seen.times(until):
                return True
            if self.stdout.fileno() in ready:
                got = self._read_stdout(int(budget) if paced else 65536)
                if got < 0:
                    drain = False
                budget -= max(got, 0)
            if self.proc.poll() is not None and not drain:
                self._read_socket()
                break
        return until is not None and bool(self.seen.times(until))

    def read_to_end(self, timeout: float) -> None:
        """Read stdout until EOF, as communicate() would: the agent closes it only by exiting, so
        every line it wrote (the last frames, the final stats) has been seen once this returns,
        however far behind the reader was when STOPPING=1 arrived."""
        deadline = time.monotonic() + timeout
        while self._read_stdout(65536) >= 0:
            assert time.monotonic() < deadline, f"stdout not closed {timeout:.0f}s after STOPPING=1"
            select.select([self.stdout.fileno()], [], [], 0.05)
        self._read_socket()

    def _read_socket(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self.seen.messages.append((time.monotonic(), data.decode()))

    def _read_stdout(self, limit: int) -> int:
        """Read up to ``limit`` bytes; returns the count, or -1 at EOF."""
        try:
            chunk = self.stdout.read(max(1, limit))
        except BlockingIOError:
            return 0
        if chunk is None:  # a non-blocking BufferedReader's "nothing yet": not the end of the stream
            return 0
        if not chunk:
            return -1
        self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        now = time.monotonic()
        self.seen.lines.extend((now, json.loads(line)) for line in complete if line.strip())
        return len(chunk)


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="fc-notify-", dir="/tmp") as d:
        yield Path(d)


def start_agent(
    notify_socket: str, source: Path, model: Path, state_dir: Path, *extra: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC=str(int(WATCHDOG_S * 1_000_000)))
    env.pop("WATCHDOG_PID", None)
    args = ["run", "--sink", "stdout", "--source", str(source), "--model", str(model)]
    args += ["--state-dir", str(state_dir), "--device-id", "notify-test", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(state_dir.parent / "agent.log").open("wb"),
    )


def datagram_socket(address: str | Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address).replace("@", "\0", 1) if str(address).startswith("@") else str(address))
    return sock


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_ready_watchdog_hang_and_stopping(notify_dir: Path, model_path: Path) -> None:
    source = clip("news_interview_portrait")  # 1504 frames: the clip cannot end during the test
    with datagram_socket(notify_dir / "notify.sock") as sock:
        proc = start_agent(str(notify_dir / "notify.sock"), source, model_path, notify_dir / "state")
        h = Harness(sock, proc)
        try:
            # 1. READY=1 once start-up is done, and before any event was published.
            assert h.pump(120, drain=True, until="READY=1"), f"no READY=1; log: {log_tail(notify_dir)}"
            ready_at = h.seen.times("READY=1")[0]
            assert not [t for t, _ in h.seen.lines if t < ready_at], "events were published before READY=1"

            # 2. Frames flow: WATCHDOG=1 at least every WatchdogSec (systemd's deadline), ~every half.
            flow_start = time.monotonic()
            h.pump(4 * WATCHDOG_S, drain=True)
            pings = h.seen.times("WATCHDOG=1", since=ready_at)
            events = [e for t, e in h.seen.lines if t >= flow_start]
            assert len(events) >= 10, f"frames did not flow: {len(events)} events; {log_tail(notify_dir)}"
            assert len(pings) >= 4, f"only {len(pings)} WATCHDOG=1 in {4 * WATCHDOG_S:.0f}s"
            gaps = [b - a for a, b in zip([ready_at, *pings], pings, strict=False)]
            assert max(gaps) < WATCHDOG_S, f"a watchdog gap of {max(gaps):.2f}s would have been a restart"
            # Rate-limited, not one datagram per frame.
            assert len(pings) <= len(events) and min(gaps[1:]) >= WATCHDOG_S / 2 - 0.05

            # 3. Hang the frame loop: stop reading its stdout. The pipe fills, publish() blocks in
            # write(), the loop stops turning, and the pings must stop while the process lives on.
            hang_start = time.monotonic()
            silent_for = 0.0
            while time.monotonic() - hang_start < 90 and silent_for < 2 * WATCHDOG_S:
                h.pump(0.5, drain=False)
                last = max(h.seen.times("WATCHDOG=1"), default=hang_start)
                silent_for = time.monotonic() - max(last, hang_start)
            assert proc.poll() is None, f"the agent exited instead of hanging: {log_tail(notify_dir)}"
            assert silent_for >= 2 * WATCHDOG_S, "WATCHDOG=1 kept arriving while the frame loop was blocked"

            # 4. Un-wedge it: the loop turns again and so do the pings.
            resumed = time.monotonic()
            h.pump(2 * WATCHDOG_S, drain=True)
            assert h.seen.times("WATCHDOG=1", since=resumed), "no WATCHDOG=1 after the loop resumed"

            # 5. SIGTERM: STOPPING=1, then a clean exit.
            proc.send_signal(signal.SIGTERM)
            assert h.pump(30, drain=True, until="STOPPING=1", paced=False), (
                f"no STOPPING=1; {log_tail(notify_dir)}"
            )
            h.read_to_end(30)
            assert proc.wait(timeout=30) == 0, log_tail(notify_dir)
        finally:
            stop(proc)


def test_abstract_socket_ready_then_stopping_at_the_end_of_a_run(notify_dir: Path, model_path: Path) -> None:
    """``@name`` (abstract namespace, what systemd uses for some managers) works too, and a run that
    ends by itself (``--max-frames``) still says STOPPING=1 after READY=1."""
    name = f"@facecast-test-{os.getpid()}-{time.monotonic_ns()}"
    with datagram_socket(name) as sock:
        proc = start_agent(
            name, clip("short_hamilton_clip"), model_path, notify_dir / "state", "--max-frames", "5"
        )
        h = Harness(sock, proc)
        try:
            h.pump(120, drain=True, until="STOPPING=1", paced=False)
            h.read_to_end(30)  # the lines written before STOPPING=1 that were not read yet
            assert proc.wait(timeout=30) == 0, log_tail(notify_dir)
            ready, stopping = h.seen.times("READY=1"), h.seen.times("STOPPING=1")
            assert ready and stopping, h.seen.messages
            assert ready[0] <= stopping[0]
            assert len([e for _, e in h.seen.lines if str(e["topic"]).endswith("/frames")]) == 5
        finally:
            stop(proc)


def log_tail(notify_dir: Path) -> str:
    path = notify_dir / "agent.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"
