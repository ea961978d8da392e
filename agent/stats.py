"""Periodic health figures on ``<prefix>/<device_id>/stats``, as a pipeline hook.

Counters that otherwise only reach the log at shutdown (dropped live frames, skipped files,
corrupt frames, publisher buffer) become visible while the agent runs. Published at QoS 0: a lost
stats message is replaced by the next one, so it never takes space in the durable event buffer.
Retained, so a dashboard or Home Assistant opening later sees the latest figures at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agent.comms.base import Publisher
from agent.events import iso_utc_ms
from agent.pipeline import FrameResult, Pipeline
from agent.system_health import system_health

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
        self._last_processed = 0
        self._models = model_names(pipeline)

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
        source = p.source.stats()
        publisher = self._publisher.stats()
        return {
            "schema": STATS_SCHEMA,
            "device_id": p.options.device_id,
            "boot_id": p.seq.boot_id,
            "ts": iso_utc_ms(time.time()),
            "uptime_s": round(now - self._started, 1),
            "fps": round((frames - self._last_frames) / elapsed, 2),
            "fps_processed": round((p.stats.processed - self._last_processed) / elapsed, 2),
            "frames": frames,
            "processed": p.stats.processed,
            "dropped": int(source.get("dropped", 0)),
            "corrupt": p.stats.corrupt,
            "faces": p.stats.faces,
            "events": p.stats.events,
            "buffer_depth": int(publisher.get("buffered", 0)),
            "mqtt_reconnects": int(publisher.get("reconnects", 0)),
            **self._models,
            "source": source,
            "publisher": publisher,
            "latency_ms": latency,
            "system": system_health(),
        }

    def publish(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        payload = self.snapshot(now)
        self._last, self._last_frames = now, self._pipeline.stats.frames
        self._last_processed = self._pipeline.stats.processed
        self._publisher.publish(self._subtopic, payload, qos=0, retain=True)
        log.debug("stats: %s", payload)


def model_names(pipeline: Pipeline) -> dict[str, Any]:
    """Detector and classifier names and the model card's version (read once, at start)."""
    import json

    from agent.model_contract import card_path_for

    out: dict[str, Any] = {"detector": getattr(pipeline.detector, "name", type(pipeline.detector).__name__)}
    model_path = getattr(pipeline.classifier, "model_path", None)
    out["classifier"] = model_path.name if model_path is not None else type(pipeline.classifier).__name__
    out["model_version"] = None
    if model_path is not None:
        try:
            card = json.loads(card_path_for(model_path).read_text(encoding="utf-8"))
            out["model_version"] = card.get("version")
        except (OSError, ValueError, AttributeError):
            log.debug("no model version in the card of %s", model_path)
    return out
