"""What the dashboard knows about each device, and the fan-out of changes to connected pages.

The MQTT thread writes, HTTP threads read: one lock around the device map, and one bounded queue
per page (a stalled browser tab loses its oldest updates, it never blocks the subscriber).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("status", "presence", "stats", "events", "summary")
CLOSED = object()
"""Put on a page's queue when the server stops, so its SSE loop ends."""


class DashboardState:
    """Latest status/presence/stats per device, a presence timeline, and the page queues."""

    def __init__(self, timeline_s: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self._timeline_s = timeline_s
        self._clock = clock
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, Any]] = {}
        self._timelines: dict[str, deque[tuple[float, dict[str, int]]]] = {}
        self._pages: list[queue.Queue[object]] = []
        self.broker_connected = False

    # -- writers (the MQTT thread) -----------------------------------------------------------

    def set_broker(self, connected: bool) -> None:
        with self._lock:
            self.broker_connected = connected
        self._broadcast({"type": "broker", "connected": connected})

    def update(self, device: str, kind: str, payload: bytes) -> None:
        """One MQTT message ``<prefix>/<device>/<kind>``; malformed payloads are logged and skipped."""
        if kind not in KINDS:
            return
        now = self._clock()
        value: Any
        if kind == "status":
            value = payload.decode("utf-8", "replace").strip()
        elif not payload:
            return  # a cleared retained message
        else:
            try:
                value = json.loads(payload)
            except ValueError:
                log.debug("ignoring non-JSON %s from %s", kind, device)
                return
        message: dict[str, Any] = {"type": kind, "device": device, "received": now, "payload": value}
        with self._lock:
            dev = self._devices.setdefault(device, {"device_id": device})
            if kind == "events":
                dev["last_event"] = value
            else:
                dev[kind] = value
                dev[f"{kind}_received"] = now
            if kind == "presence" and isinstance(value, dict):
                counts = dict(Counter(t["emotion"]["label"] for t in value.get("tracks", [])))
                line = self._timelines.setdefault(device, deque())
                line.append((now, counts))
                while len(line) > 1 and line[1][0] < now - self._timeline_s:
                    line.popleft()
                message["timeline_point"] = [now, counts]
        self._broadcast(message)

    # -- readers (HTTP threads) --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            devices = {k: dict(v) for k, v in self._devices.items()}
            for device, line in self._timelines.items():
                devices[device]["timeline"] = [[t, c] for t, c in line]
            return {
                "type": "snapshot",
                "broker": self.broker_connected,
                "timeline_s": self._timeline_s,
                "now": self._clock(),
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
