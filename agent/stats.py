"""Periodic health figures on ``<prefix>/<device_id>/stats``, on a timer of their own.

Counters that otherwise only reach the log at shutdown (dropped live frames, skipped files,
corrupt frames, publisher buffer) become visible while the agent runs. Published at QoS 0: a lost
stats message is replaced by the next one, so it never takes space in the durable event buffer.
Retained, so a dashboard or Home Assistant opening later sees the latest figures at once.

Why a timer and not a frame hook: a camera that stopped delivering frames is exactly when someone
looks at the stats, and a hook only runs when a frame does. The timer thread also sends one as soon
as the broker has accepted the connection (a QoS 0 message sent before that is lost, and Home
Assistant would show "unknown" for a whole interval), again after every reconnect, and a last one
on a clean stop, marked ``final``, with the run's closing counts and ``connected: false``: it stays
retained after the agent has gone, and must not say the agent is still there.
JSON Schema: ``agent/schema/stats.schema.json``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.comms.base import Publisher
from agent.events import iso_utc_ms
from agent.pipeline import Pipeline
from agent.system_health import system_health

log = logging.getLogger(__name__)

STATS_SCHEMA = "facecast.stats/1"
POLL_S = 0.5
"""How often the timer thread looks at the connection (to send right after a (re)connect)."""
DRAIN_S = 1.0
"""At most this long, on a clean stop, for the events in flight before the final stats; well inside
the shutdown budget (systemd's 5 s) with the publisher's own flush after it."""


class StatsReporter:
    """:meth:`start` after the publisher has started; :meth:`stop` (the final message) before it closes."""

    def __init__(
        self,
        pipeline: Pipeline,
        publisher: Publisher,
        interval_s: float,
        *,
        subtopic: str = "stats",
        clock: Callable[[], float] = time.monotonic,
        count_faces: bool = True,
    ) -> None:
        """``count_faces=False`` (``privacy.mode: aggregate``): ``faces`` is null, since its growth
        from one message to the next would count the faces of each interval, small groups included."""
        self._pipeline = pipeline
        self._count_faces = count_faces
        self._publisher = publisher
        self._interval = interval_s
        self._subtopic = subtopic
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._last_frames = 0
        self._last_processed = 0
        self._next_at = self._started + interval_s
        self._was_connected = False
        self._models = model_names(pipeline)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.published = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stats", daemon=True)
        self._thread.start()

    def stop(self, *, final: bool = True, drain_s: float = DRAIN_S) -> None:
        """End the timer; with ``final``, publish the run's closing figures (see the module docstring).

        While connected, it first gives the publisher up to ``drain_s`` to deliver what it holds
        (milliseconds, usually), so the last word on ``buffer_depth`` is what the stop left behind,
        not the events of the last frames still on their way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        deadline = time.monotonic() + drain_s
        while final and time.monotonic() < deadline and self._connected():
            if not self._publisher.stats().get("buffered"):
                break
            time.sleep(0.02)
        if final:
            try:
                self.publish(final=True)
            except (OSError, ValueError, RuntimeError) as exc:  # a closed stdout: the stop goes on
                log.warning("stats: the final message was not published: %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick(self._clock(), self._connected())
            except Exception as exc:  # noqa: BLE001 - a stats message is never worth the agent
                log.warning("stats: not published: %s", exc)  # e.g. a reader of stdout that went away
                wait = POLL_S
            self._stop.wait(wait)

    def tick(self, now: float, connected: bool) -> float:
        """Publish when due (every interval, frames or not) or just (re)connected; returns how long
        to wait before the next look."""
        if now >= self._next_at or (connected and not self._was_connected):
            self.publish(now=now)
        self._was_connected = connected
        return max(0.0, min(POLL_S, self._next_at - now))

    def _connected(self) -> bool:
        """Whether a message sent now can arrive; a sink that cannot tell (stdout) always can."""
        is_connected = getattr(self._publisher, "is_connected", None)
        return bool(is_connected()) if callable(is_connected) else True

    def snapshot(self, now: float, *, final: bool = False) -> dict[str, Any]:
        p = self._pipeline
        frames = p.stats.frames
        elapsed = max(1e-9, now - self._last)
        latency = {
            k: {"median": round(v["median"], 3), "p95": round(v["p95"], 3)}
            for k, v in p.latency.summary().items()
        }
        source = p.source.stats()
        publisher = self._publisher.stats()
        if final:
            publisher["connected"] = False  # read once the agent has gone: it is no longer there
        return {
            "schema": STATS_SCHEMA,
            "device_id": p.options.device_id,
            "boot_id": p.seq.boot_id,
            "ts": iso_utc_ms(time.time()),
            "final": final,
            "uptime_s": round(now - self._started, 1),
            "fps": round((frames - self._last_frames) / elapsed, 2),
            "fps_processed": round((p.stats.processed - self._last_processed) / elapsed, 2),
            "frames": frames,
            "processed": p.stats.processed,
            "dropped": int(source.get("dropped", 0)),
            "corrupt": p.stats.corrupt,
            "faces": p.stats.faces if self._count_faces else None,
            "events": p.stats.events,
            "buffer_depth": int(publisher.get("buffered", 0)),
            "mqtt_reconnects": int(publisher.get("reconnects", 0)),
            **self._models,
            "source": source,
            "publisher": publisher,
            "latency_ms": latency,
            "system": system_health(),
        }

    def publish(self, now: float | None = None, *, final: bool = False) -> None:
        with self._lock:  # the timer thread and stop() never interleave two messages' counters
            now = self._clock() if now is None else now
            payload = self.snapshot(now, final=final)
            self._last, self._last_frames = now, self._pipeline.stats.frames
            self._last_processed = self._pipeline.stats.processed
            self._next_at = now + self._interval
            self._publisher.publish(self._subtopic, payload, qos=0, retain=True)
            self.published += 1
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
