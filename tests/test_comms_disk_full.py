"""The event buffer and the seq file on a really full file system (a small tmpfs), and an MQTT
publisher whose disk fills while the broker is down: no crash, room made by evicting the oldest,
and every accepted event either delivered or counted as dropped."""

from __future__ import annotations

import json
import logging
import time

import pytest

from agent.comms.buffer import BufferNoSpaceError, DiskBuffer
from agent.comms.mqtt import MqttPublisher
from agent.config.mqtt import MqttConfig
from agent.events import SEQ_FILE, SeqAllocator
from agent.model_contract import EMOTIONS
from agent.state_dir import StateDirFullError
from tests import brokers

MiB = 1024 * 1024
DEVICE = "diskcam"
FRAMES = f"facecast/{DEVICE}/frames"
STATUS = f"facecast/{DEVICE}/status"


def event(i: int) -> dict[str, object]:
    """About the size of a one-face frame event (~650 bytes of JSON)."""
    probs = {k: 0.1428 for k in EMOTIONS}
    face = {"box": [212, 64, 118, 118], "score": 0.93, "emotion": {"label": "happy", "probs": probs}}
    return {"seq": i, "boot_id": "8f0c2d1e-5b7a-4c1f-9e3d-2a6b8c0d4e5f", "pad": "x" * 260, "faces": [face]}


def payload(i: int) -> bytes:
    return json.dumps(event(i), separators=(",", ":")).encode()


def test_full_disk_at_open_is_one_clear_error(small_disk):
    disk = small_disk(1 * MiB)
    disk.fill()
    with pytest.raises(BufferNoSpaceError) as err:
        DiskBuffer(disk.path / "state" / "buffer.sqlite3", 1000)
    message = str(err.value)
    assert "\n" not in message
    assert str(disk.path / "state") in message and "is full" in message


def test_existing_buffer_on_a_full_disk_at_open_is_one_clear_error(small_disk):
    """The file is there from an earlier run, but a write needs room: found at start, not later."""
    disk = small_disk(1 * MiB)
    path = disk.path / "buffer.sqlite3"
    buf = DiskBuffer(path, 1000)
    buf.append("t", payload(0), 1)
    buf.close()
    disk.fill()
    with pytest.raises(BufferNoSpaceError, match="is full"):
        DiskBuffer(path, 1000)


def test_buffer_filling_its_disk_evicts_the_oldest_and_never_fails(small_disk, caplog):
    """The broker is down and the buffer meets the end of a 2 MiB partition long before its 32 MiB
    budget: it keeps the newest events in the room there is (it used to die with SQLITE_FULL)."""
    caplog.set_level(logging.WARNING, logger="agent.comms.buffer")
    disk = small_disk(2 * MiB)
    buf = DiskBuffer(disk.path / "buffer.sqlite3", 1_000_000)
    n = 6000
    for i in range(n):
        assert buf.append("facecast/d/frames", payload(i), 1) is not None, f"event {i} not stored"
    dropped = buf.dropped_by_reason
    assert dropped["disk_full"] > 0
    assert dropped["disk_full"] == buf.dropped  # no other reason
    assert len(buf) + buf.dropped == n
    assert disk.free_bytes() > 0  # room left for the seq file, the lock and the WAL
    seqs = [json.loads(r.payload)["seq"] for r in buf.peek(0, n)]
    assert seqs == list(range(n - len(seqs), n))  # the newest, in order
    buf.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"the file system of {disk.path} is full" in line for line in lines)
    n = buf.dropped
    assert lines[-1] == f"buffer overflow ended: {n} event(s) dropped in that burst (disk_full: {n})"


def test_disk_filled_by_someone_else_then_freed(small_disk):
    """Another writer takes every free byte: the buffer goes on in the space it already holds
    (evicting its oldest), and grows again once space is freed."""
    disk = small_disk(2 * MiB)
    buf = DiskBuffer(disk.path / "buffer.sqlite3", 1_000_000)
    accepted = stored_while_full = 0
    for i in range(500):
        buf.append("facecast/d/frames", payload(i), 1)
        accepted += 1
    disk.fill()
    assert disk.free_bytes() == 0
    for i in range(500, 2500):
        stored_while_full += buf.append("facecast/d/frames", payload(i), 1) is not None
        accepted += 1
    assert len(buf) + buf.dropped == accepted
    assert stored_while_full > 1500  # eviction made room; the new events were not the ones lost
    held_while_full = len(buf)
    disk.free()
    for i in range(2500, 3000):
        assert buf.append("facecast/d/frames", payload(i), 1) is not None
        accepted += 1
    assert len(buf) > held_while_full
    assert len(buf) + buf.dropped == accepted
    buf.close()


def test_no_room_at_all_drops_the_new_event_counted(small_disk, caplog):
    """Nothing to evict and not a byte free: the event is dropped, counted and logged, not raised."""
    caplog.set_level(logging.WARNING, logger="agent.comms.buffer")
    disk = small_disk(1 * MiB)
    buf = DiskBuffer(disk.path / "buffer.sqlite3", 1000)
    disk.fill()
    results = [buf.append("facecast/d/frames", payload(i), 1) for i in range(20)]
    stored = sum(r is not None for r in results)
    assert stored < 20  # the first few may fit in pages the empty queue already has
    assert len(buf) + buf.dropped == 20
    assert buf.dropped == buf.dropped_by_reason["disk_full"]
    assert any("no room for a new event" in r.getMessage() for r in caplog.records)
    disk.free()
    assert buf.append("facecast/d/frames", payload(99), 1) is not None  # and it recovers
    buf.close()


def test_seq_reservation_survives_a_full_disk(small_disk):
    """seq.json is replaced through a temporary file, which a full disk has no room for; the
    reservation then rewrites the file in place, and numbers still never repeat."""
    disk = small_disk(1 * MiB)
    seq = SeqAllocator(disk.path, block=10)
    first = [seq.next() for _ in range(15)]  # two reservations, the normal way
    disk.fill()
    more = [seq.next() for _ in range(30)]  # three more, on a full disk
    assert first + more == list(range(45))
    assert json.loads((disk.path / SEQ_FILE).read_text())["next"] == 50
    assert not list(disk.path.glob("*.tmp"))
    assert SeqAllocator(disk.path).next() == 50  # a restart continues after the reservation


def test_seq_file_missing_on_a_full_disk_is_one_clear_error(small_disk):
    disk = small_disk(1 * MiB)
    disk.fill()
    with pytest.raises(StateDirFullError, match=rf"state_dir {disk.path} is full"):
        SeqAllocator(disk.path).next()


def test_disk_full_while_broker_down_every_event_delivered_or_counted(
    small_disk, persistent_mosquitto: brokers.Mosquitto, caplog
):
    """The broker dies; the partition under the buffer (3 MiB, under the 32 MiB budget) fills.
    The publisher never raises; when the broker is back, delivered + dropped == accepted exactly,
    the dropped ones are the oldest of the outage, and ``stopped`` is announced at the end."""
    caplog.set_level(logging.INFO)
    broker = persistent_mosquitto
    sub = brokers.Subscriber(broker.port, [FRAMES, STATUS], persistent=True)
    assert brokers.wait_for((broker.workdir / "mosquitto.db").exists, 5)
    time.sleep(1.2)  # the broker autosaves the subscriber's session before it is killed
    disk = small_disk(3 * MiB)
    cfg = MqttConfig(port=broker.port, reconnect_min_delay=1, reconnect_max_delay=1, keepalive=10)
    pub = MqttPublisher(cfg, DEVICE, disk.path)
    accepted = 0
    try:
        pub.start()
        assert brokers.wait_for(pub.is_connected, 10)
        for _ in range(200):
            pub.publish("frames", event(accepted))
            accepted += 1
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 200, 10)
        broker.kill()
        assert brokers.wait_for(lambda: not pub.is_connected(), 10)
        for _ in range(6000):
            pub.publish("frames", event(accepted))
            accepted += 1
        during = pub.stats()
        assert during["dropped_by_reason"]["disk_full"] > 0
        assert during["dropped"] == during["dropped_by_reason"]["disk_full"]
        assert 0 < during["buffer_bytes"] <= 3 * MiB
        broker.start()
        assert brokers.wait_for(lambda: pub.stats()["reconnects"] >= 1, 15)
        for _ in range(200):
            pub.publish("frames", event(accepted))
            accepted += 1
        pub.close(timeout=30)
        stats = pub.stats()
        assert stats["buffered"] == 0
        assert brokers.wait_for(lambda: len(set(sub.seqs(FRAMES))) >= accepted - stats["dropped"], 20)
        delivered = set(sub.seqs(FRAMES))
        assert len(delivered) + stats["dropped"] == accepted
        missing = set(range(accepted)) - delivered
        assert min(missing) >= 200 and max(missing) < 6200  # only events of the outage were lost
        assert set(range(6200, accepted)) <= delivered  # and never the newest
        assert brokers.wait_for(lambda: sub.payloads(STATUS)[-1:] == [b"stopped"], 5)
    finally:
        pub.close(timeout=1)
        sub.close()
    summary = [r.getMessage() for r in caplog.records if "MQTT publisher closed" in r.getMessage()]
    n, sent = stats["dropped"], stats["published"]
    assert summary == [f"MQTT publisher closed; {sent} event(s) delivered, {n} dropped (disk_full: {n})"]
