"""DiskBuffer: order, bounds, durability across restarts and SIGKILL, thread safety."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from agent.comms.buffer import DiskBuffer

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
    buf = DiskBuffer(tmp_path / "b.sqlite3", 10)
    for i in range(25):
        buf.append("t", str(i).encode(), 1)
    assert len(buf) == 10
    assert buf.dropped == 15
    assert [r.payload for r in buf.peek(0, 100)] == [str(i).encode() for i in range(15, 25)]
    starts = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(starts) == 1
    # Draining below the low-water mark ends the burst with one summary line.
    buf.delete([r.id for r in buf.peek(0, 5)])
    assert any("15 oldest event(s) dropped" in r.getMessage() for r in caplog.records)
    buf.close()


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
