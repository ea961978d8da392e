"""DiskBuffer: order, bounds, durability across restarts and SIGKILL, thread safety."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agent.comms.buffer import DiskBuffer
from agent.config.mqtt import BufferConfig
from agent.config.validation import ValidationError
from agent.model_contract import EMOTIONS
from tests.agent_support import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parents[1]


def test_fifo_peek_delete_count(tmp_path):
    buf = DiskBuffer(tmp_path / "b.sqlite3", 100)
    ids = [buf.append("t/a", f"m{i}".encode(), 1, retain=i == 2) for i in range(10)]
    assert ids == sorted(ids)
    assert len(buf) == 10
    rows = buf.peek(0, 4)
    assert [r.payload for r in rows] == [b"m0", b"m1", b"m2", b"m3"]
    assert rows[2].retain and not rows[1].retain
    assert [r.payload for r in buf.peek(rows[-1].id, 3)] == [b"m4", b"m5", b"m6"]
    assert buf.delete([r.id for r in rows]) == 4
    assert buf.delete([rows[0].id]) == 0  # already gone: ignored
    assert len(buf) == 6
    assert buf.peek(0, 1)[0].payload == b"m4"
    buf.close()
    buf.close()


def test_survives_reopen_and_ids_keep_growing(tmp_path):
    path = tmp_path / "state" / "b.sqlite3"
    buf = DiskBuffer(path, 100)
    last = 0
    for i in range(5):
        last = buf.append("t", bytes([i]), 1)
    buf.delete([last])  # deleting the newest must not let its id be reused (AUTOINCREMENT)
    buf.close()
    buf = DiskBuffer(path, 100)
    assert len(buf) == 4
    new_id = buf.append("t", b"new", 1)
    assert new_id > last
    assert [r.payload for r in buf.peek(0, 10)] == [b"\x00", b"\x01", b"\x02", b"\x03", b"new"]
    buf.close()


def test_drop_oldest_counted_and_logged_once_per_burst(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="agent.comms.buffer")
    buf = DiskBuffer(tmp_path / "b.sqlite3", 10, log_interval_s=0.3)
    for i in range(25):
        buf.append("t", str(i).encode(), 1)
    assert len(buf) == 10
    assert buf.dropped == 15
    assert buf.dropped_by_reason == {"max_events": 15, "max_bytes": 0, "disk_full": 0, "error": 0}
    assert [r.payload for r in buf.peek(0, 100)] == [str(i).encode() for i in range(15, 25)]
    starts = [r for r in caplog.records if "full (buffer.max_events 10)" in r.getMessage()]
    assert len(starts) == 1
    # A quiet interval later, the next call ends the burst with one summary line.
    time.sleep(0.35)
    buf.delete([r.id for r in buf.peek(0, 5)])
    ends = [r.getMessage() for r in caplog.records if "overflow ended" in r.getMessage()]
    assert ends == ["buffer overflow ended: 15 event(s) dropped in that burst (max_events: 15)"]
    buf.close()


def test_warnings_are_rate_limited_while_dropping_goes_on(tmp_path, caplog):
    """Hours of outage at a full buffer: one line per interval, not one per event."""
    caplog.set_level(logging.WARNING, logger="agent.comms.buffer")
    buf = DiskBuffer(tmp_path / "b.sqlite3", 20, log_interval_s=0.25)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.2:
        buf.append("t", b"x" * 100, 1)
        n += 1
    elapsed = time.monotonic() - t0
    buf.close()  # ends the burst: its summary line
    lines = [r.getMessage() for r in caplog.records]
    assert buf.dropped == n - 20 > 100
    assert 2 <= len(lines) <= elapsed / 0.25 + 2, lines
    assert "still dropping" in lines[1]
    gone = n - 20
    assert lines[-1] == f"buffer overflow ended: {gone} event(s) dropped in that burst (max_events: {gone})"


def _frame_payload(i: int) -> bytes:
    """A realistic one-face frame event (~650 bytes, as the agent publishes them)."""
    probs = {k: 0.1428 for k in EMOTIONS}
    doc = {
        "schema": "facecast.frame/1",
        "device_id": "kiosk-1",
        "boot_id": "8f0c2d1e-5b7a-4c1f-9e3d-2a6b8c0d4e5f",
        "seq": i,
        "ts": "2026-11-28T10:15:02.123Z",
        "frame": {"index": i, "width": 640, "height": 360},
        "latency_ms": {"decode": 1.9, "resize": 0.4, "detect": 2.4, "classify": 0.7, "prev_publish": 0.1},
        "faces": [
            {
                "box": [212, 64, 118, 118],
                "score": 0.93,
                "track_id": 3,
                "emotion": {"label": "happy", "score": 0.81, "probs": probs},
                "gender": {"label": "female", "score": 0.93},
            }
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def test_byte_cap_bounds_file_wal_and_index(tmp_path):
    """``max_bytes`` bounds the sum of the file, its WAL and the WAL index, at every moment a
    background sampler sees, while the broker is down and the sender acks now and then; every
    event is either still queued, delivered (deleted) or counted as dropped."""
    max_bytes = 2 * 1024 * 1024
    buf = DiskBuffer(tmp_path / "buffer.sqlite3", 1_000_000, max_bytes)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], buf.disk_bytes())

    sampler = threading.Thread(target=sample)
    sampler.start()
    n, deleted = 8000, 0
    try:
        for i in range(n):
            assert buf.append("facecast/kiosk-1/frames", _frame_payload(i), 1) is not None
            peak[0] = max(peak[0], buf.disk_bytes())
            if i % 1000 == 500:  # a broker that comes and goes: a batch of acknowledgements
                deleted += buf.delete(r.id for r in buf.peek(0, 256))
    finally:
        done.set()
        sampler.join()
    dropped = buf.dropped_by_reason
    assert dropped["max_bytes"] > 0 and dropped["disk_full"] == 0
    assert len(buf) + deleted + buf.dropped == n
    assert peak[0] <= max_bytes, f"peak {peak[0]} > {max_bytes}"
    assert peak[0] > max_bytes * 0.7  # the budget is used, not just respected
    # The newest events survive, in order.
    rows = buf.peek(0, 1_000_000)
    assert [json.loads(r.payload)["seq"] for r in rows][-5:] == list(range(n - 5, n))
    buf.close()


def test_reopened_with_a_lower_row_cap_evicts_the_excess(tmp_path):
    path = tmp_path / "b.sqlite3"
    buf = DiskBuffer(path, 1000)
    for i in range(300):
        buf.append("t", str(i).encode(), 1)
    buf.close()
    buf = DiskBuffer(path, 100)
    assert len(buf) == 100
    assert buf.dropped_by_reason["max_events"] == 200
    assert buf.peek(0, 1)[0].payload == b"200"
    buf.close()


def test_count_never_negative_when_another_writer_deletes(tmp_path):
    """Two queues on one file (what two agents on one state dir did): the row counter once went
    negative and ``len()`` raised. The agent now refuses the second one (tests/test_state_dir.py);
    the buffer still trusts the file over its own count."""
    path = tmp_path / "b.sqlite3"
    mine, other = DiskBuffer(path, 1000), DiskBuffer(path, 1000)
    for _ in range(10):
        mine.append("t", b"m", 1)
        other.append("t", b"o", 1)
    # `mine` sends and deletes all 20 rows, 10 of which it never counted: 10 - 20 < 0 before.
    assert mine.delete(r.id for r in mine.peek(0, 100)) == 20
    assert len(mine) == 0
    mine.close()
    other.close()


@pytest.mark.parametrize("damage", ["not_a_database", "torn_pages"])
def test_corrupt_file_moved_aside_and_a_fresh_buffer_starts(tmp_path, caplog, damage):
    """Power loss on an SD card: the file is renamed aside with a time stamp, one ERROR line names
    both paths, and the queue starts empty (it used to fail every start: a service down for good)."""
    path = tmp_path / "buffer.sqlite3"
    if damage == "not_a_database":
        path.write_bytes(os.urandom(20_000))
    else:
        buf = DiskBuffer(path, 100_000)
        for i in range(3000):
            buf.append("facecast/kiosk-1/frames", _frame_payload(i), 1)
        buf.close()
        data = bytearray(path.read_bytes())
        for page in range(2, len(data) // 4096, 7):  # every 7th page from the 3rd on: garbage
            data[page * 4096 : page * 4096 + 4096] = os.urandom(4096)
        path.write_bytes(bytes(data))
    original = path.read_bytes()
    caplog.set_level(logging.INFO, logger="agent.comms.buffer")
    buf = DiskBuffer(path, 100_000)
    try:
        assert len(buf) == 0
        assert buf.append("t", b"after", 1) is not None
        assert [r.payload for r in buf.peek(0, 10)] == [b"after"]
    finally:
        buf.close()
    aside = sorted(tmp_path.glob("buffer.sqlite3.corrupt-*"))
    assert len(aside) == 1
    assert re.fullmatch(r"buffer\.sqlite3\.corrupt-\d{8}T\d{6}Z", aside[0].name)
    assert aside[0].read_bytes() == original  # kept as it was, for a post-mortem
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert str(path) in errors[0] and str(aside[0]) in errors[0]


def test_max_bytes_config_key_is_validated():
    assert BufferConfig().max_bytes == 32 * 1024 * 1024
    assert BufferConfig.from_mapping({"max_bytes": "64MiB"}).max_bytes == 64 * 1024 * 1024
    assert BufferConfig.from_mapping({"max_bytes": 5_000_000}).max_bytes == 5_000_000
    with pytest.raises(ValidationError, match=r"max_bytes: must be at least 1MiB \(1048576\), got 1000"):
        BufferConfig.from_mapping({"max_bytes": 1000})
    with pytest.raises(ValidationError, match="max_bytes: must be a size in bytes"):
        BufferConfig.from_mapping({"max_bytes": "lots"})
    with pytest.raises(ValidationError, match="max_byte: unknown key"):
        BufferConfig.from_mapping({"max_byte": 5_000_000})


def test_thread_safe_concurrent_appends_and_deletes(tmp_path):
    buf = DiskBuffer(tmp_path / "b.sqlite3", 1_000_000)
    n_threads, per = 4, 500
    consumed: list[bytes] = []
    done = threading.Event()

    def produce(k: int) -> None:
        for i in range(per):
            buf.append("t", f"{k}:{i}".encode(), 1)

    def consume() -> None:
        cursor = 0
        while not (done.is_set() and len(buf) == 0):
            rows = buf.peek(cursor, 100)
            if rows:
                consumed.extend(r.payload for r in rows)
                cursor = rows[-1].id
                buf.delete(r.id for r in rows)
            else:
                time.sleep(0.001)

    producers = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
    consumer = threading.Thread(target=consume)
    consumer.start()
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    done.set()
    consumer.join(30)
    assert len(consumed) == n_threads * per
    assert len(set(consumed)) == n_threads * per
    for k in range(n_threads):  # per-producer order is kept
        mine = [int(p.split(b":")[1]) for p in consumed if p.startswith(f"{k}:".encode())]
        assert mine == list(range(per))
    buf.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from agent.comms.buffer import DiskBuffer

    buf = DiskBuffer(Path(sys.argv[1]), 1_000_000)
    i = 0
    while True:
        buf.append("t", str(i).encode(), 1)
        print(i, flush=True)  # printed only after the commit returned: "accepted"
        i += 1
    """
)


def test_sigkill_loses_nothing_accepted(tmp_path):
    path = tmp_path / "b.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert proc.stdout is not None
    accepted = -1
    for line in proc.stdout:
        accepted = int(line)
        if accepted >= 3000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    buf = DiskBuffer(path, 1_000_000)
    payloads = [int(r.payload) for r in buf.peek(0, 1_000_000)]
    buf.close()
    assert payloads[: accepted + 1] == list(range(accepted + 1))
    assert payloads == list(range(len(payloads)))


def test_throughput_is_thousands_per_second(tmp_path):
    """Not a benchmark (see bench/bench_mqtt.py): a floor that catches a missing WAL/batch delete."""
    buf = DiskBuffer(tmp_path / "b.sqlite3", 1_000_000)
    payload = b'{"seq":1,"faces":[{"box":[1,2,3,4],"emotion":"happy","gender":"female"}]}'
    n = 3000
    t0 = time.perf_counter()
    for _ in range(n):
        buf.append("facecast/x/frames", payload, 1)
    cursor = 0
    while rows := buf.peek(cursor, 256):
        cursor = rows[-1].id
        buf.delete(r.id for r in rows)
    rate = n / (time.perf_counter() - t0)
    buf.close()
    assert len(buf) == 0
    assert rate > 1000, f"{rate:.0f} events/s"


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("max_bytes: 10kB", {}, "mqtt.buffer.max_bytes: must be at least 1MiB (1048576), got 10000"),
        ("max_bytes: plenty", {}, "mqtt.buffer.max_bytes: must be a size in bytes"),
        ("max_byte: 64MiB", {}, "mqtt.buffer.max_byte: unknown key"),
        ("max_events: 10", {"FACECAST_MQTT__BUFFER__MAX_BYTES": "0.5MiB"}, "must be at least 1MiB"),
    ],
)
def test_max_bytes_bad_values_are_one_line_errors(tmp_path, text, env, needle):
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  buffer: {{{text}}}\n")
    proc = run_cli("config", "check", str(config), env=env)
    assert proc.returncode == 2
    assert_one_line_error(proc, needle)


def test_max_bytes_accepts_sizes_from_file_and_environment(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  buffer: {max_bytes: 64MiB}\n")
    assert "max_bytes: 67108864" in run_cli("config", "check", str(config)).stdout
    env = {"FACECAST_MQTT__BUFFER__MAX_BYTES": "8388608"}
    assert "max_bytes: 8388608" in run_cli("config", "check", str(config), env=env).stdout
