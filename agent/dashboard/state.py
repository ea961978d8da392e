"""What the dashboard knows about each device, and the fan-out of changes to connected pages.

The MQTT thread writes, HTTP threads read: one lock around the device map, and one bounded queue
per page (a stalled browser tab loses its oldest updates, it never blocks the subscriber). Every
payload goes through :mod:`agent.dashboard.payloads` first: a malformed one is counted and skipped,
never stored, so neither this thread nor a page meets it.

The emotion timeline has two sources. Presence changes give the live picture; the retained
``summary`` (people per emotion of the last window) fills the time before the dashboard saw any
presence, e.g. for an agent that stopped before the dashboard started, or one in
``privacy.mode: aggregate``, which sends no presence at all.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from agent.dashboard.payloads import READERS, MalformedError

log = logging.getLogger(__name__)

KINDS = tuple(READERS)
CLOSED = object()
"""Put on a page's queue when the server stops, so its SSE loop ends."""
MAX_DEVICE_ID = 128


class DashboardState:
    """Latest status/presence/stats/summary per device, an emotion timeline, and the page queues."""

    def __init__(self, timeline_s: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self._timeline_s = timeline_s
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, Any]] = {}
        self._timelines: dict[str, list[tuple[float, dict[str, int]]]] = {}
        self._blocks: dict[str, deque[tuple[float, float, dict[str, int]]]] = {}
        self._pages: list[queue.Queue[object]] = []
        self._skipped: Counter[tuple[str, str]] = Counter()
        self.malformed = 0
        self.broker_connected = False

    # -- writers (the MQTT thread) -----------------------------------------------------------

    def set_broker(self, connected: bool) -> None:
        with self._lock:
            self.broker_connected = connected
        self._broadcast({"type": "broker", "connected": connected})

    def update(self, device: str, kind: str, payload: bytes) -> None:
        """One MQTT message ``<prefix>/<device>/<kind>``; malformed payloads are counted and skipped."""
        if kind not in READERS:
            return
        if not payload:
            return  # a cleared retained message
        if not device or len(device) > MAX_DEVICE_ID:
            self.skip(device[:MAX_DEVICE_ID], kind, f"device id of {len(device)} characters")
            return
        try:
            value = READERS[kind](payload)
        except MalformedError as exc:
            self.skip(device, kind, str(exc))
            return
        now = self._clock()
        message: dict[str, Any] = {"type": kind, "device": device, "received": now, "payload": value}
        with self._lock:
            dev = self._devices.setdefault(device, {"device_id": device})
            if kind == "events":
                dev["last_event"] = value
            else:
                dev[kind] = value
            seen = self._seen(kind, value, now)
            if seen is not None and seen > dev.get("last_seen", 0.0):
                dev["last_seen"] = seen
            message["last_seen"] = dev.get("last_seen")
            if kind == "presence":
                message["timeline_point"] = self._add_point(device, value, now)
            elif kind == "summary":
                message["timeline_block"] = self._add_block(device, value, now)
        self._broadcast(message)

    def skip(self, device: str, kind: str, why: str) -> None:
        """Count a message that could not be read; say so once per device and kind."""
        with self._lock:
            self.malformed += 1
            self._skipped[(device, kind)] += 1
            first = self._skipped[(device, kind)] == 1
            total = self.malformed
        (log.warning if first else log.debug)("skipping a malformed %s from %r: %s", kind, device, why)
        self._broadcast({"type": "malformed", "count": total})

    def dismiss(self, device: str) -> bool:
        """Forget a device (until it publishes again); every open page drops it."""
        with self._lock:
            found = self._devices.pop(device, None) is not None
            self._timelines.pop(device, None)
            self._blocks.pop(device, None)
        if found:
            self._broadcast({"type": "dismiss", "device": device})
        return found

    def _seen(self, kind: str, value: dict[str, Any], now: float) -> float | None:
        """When the agent was last heard of: its own timestamps where the message has one (a
        retained message may be hours old), now for a live ``online``."""
        if kind == "summary":
            return min(float(value["end"]), now)
        if "ts" in value:
            return min(float(value["ts"]), now)
        if kind == "status" and value["status"] == "online":
            return now
        return None

    def _add_point(self, device: str, value: dict[str, Any], now: float) -> list[Any]:
        counts = dict(Counter(t["emotion"] for t in value["tracks"]))
        at = min(float(value.get("ts", now)), now)
        line = self._timelines.setdefault(device, [])
        bisect.insort(line, (at, counts), key=lambda p: p[0])
        while len(line) > 1 and line[1][0] < now - self._timeline_s:
            line.pop(0)
        return [at, counts]

    def _add_block(self, device: str, value: dict[str, Any], now: float) -> list[Any]:
        blocks = self._blocks.setdefault(device, deque(maxlen=64))
        block = (float(value["start"]), float(value["end"]), dict(value["emotion"]))
        if block not in blocks:
            blocks.append(block)
        while blocks and blocks[0][1] < now - self._timeline_s:
            blocks.popleft()
        return list(block)

    # -- readers (HTTP threads) --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            devices = {k: dict(v) for k, v in self._devices.items()}
            for device, line in self._timelines.items():
                if device in devices:
                    devices[device]["timeline"] = [[t, c] for t, c in line]
            for device, blocks in self._blocks.items():
                if device in devices:
                    devices[device]["blocks"] = [list(b) for b in blocks]
            return {
                "type": "snapshot",
                "broker": self.broker_connected,
                "timeline_s": self._timeline_s,
                "now": self._clock(),
                "malformed": self.malformed,
                "devices": devices,
            }

    def attach(self, maxsize: int = 1000) -> queue.Queue[object]:
        q: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        with self._lock:
            self._pages.append(q)
        return q

    def detach(self, q: queue.Queue[object]) -> None:
        with self._lock:
            if q in self._pages:
                self._pages.remove(q)

    def close(self) -> None:
        with self._lock:
            pages = list(self._pages)
        for q in pages:
            self._offer(q, CLOSED)

    def _broadcast(self, message: dict[str, Any]) -> None:
        with self._lock:
            pages = list(self._pages)
        for q in pages:
            self._offer(q, message)

    @staticmethod
    def _offer(q: queue.Queue[object], item: object) -> None:
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    q.get_nowait()  # drop the oldest for a page that does not keep up
