"""Periodic health figures on ``<prefix>/<device_id>/stats``, as a pipeline hook.

Counters that otherwise only reach the log at shutdown (dropped live frames, skipped files,
corrupt frames, publisher buffer) become visible while the agent runs. Published at QoS 0: a lost
stats message is replaced by the next one, so it never takes space in the durable event buffer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agent.comms.base import Publisher
from agent.events import iso_utc_ms
from agent.pipeline import FrameResult, Pipeline

log = logging.getLogger(__name__)

STATS_SCHEMA = "facecast.stats/1"


class StatsReporter:
    """``on_frame`` hook: every ``interval_s`` seconds, publish the pipeline's counters."""

    def __init__(
        self,
        pipeline: Pipeline,
        publisher: Publisher,
        interval_s: float,
        *,
        subtopic: str = "stats",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline = pipeline
        self._publisher = publisher
        self._interval = interval_s
        self._subtopic = subtopic
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._last_frames = 0

    def __call__(self, _result: FrameResult) -> None:
        now = self._clock()
        if now - self._last >= self._interval:
            self.publish(now)

    def snapshot(self, now: float) -> dict[str, Any]:
        p = self._pipeline
        frames = p.stats.frames
        elapsed = max(1e-9, now - self._last)
        latency = {
            k: {"median": round(v["median"], 3), "p95": round(v["p95"], 3)}
            for k, v in p.latency.summary().items()
        }
        return {
            "schema": STATS_SCHEMA,
            "device_id": p.options.device_id,
            "boot_id": p.seq.boot_id,
            "ts": iso_utc_ms(time.time()),
            "uptime_s": round(now - self._started, 1),
            "fps": round((frames - self._last_frames) / elapsed, 2),
            "frames": frames,
            "processed": p.stats.processed,
            "corrupt": p.stats.corrupt,
            "faces": p.stats.faces,
            "events": p.stats.events,
            "source": p.source.stats(),
            "publisher": self._publisher.stats(),
            "latency_ms": latency,
        }

    def publish(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        payload = self.snapshot(now)
        self._last, self._last_frames = now, self._pipeline.stats.frames
        self._publisher.publish(self._subtopic, payload, qos=0)
        log.debug("stats: %s", payload)
