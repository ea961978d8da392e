"""The tracking layer as one ``on_faces`` hook: tracker, per-track events, presence, summaries.

Attached by :func:`agent.extensions.attach_extensions`; the frame loop only sees a function that
takes a frame's faces and returns them annotated with ``track_id`` and smoothed labels.
"""

from __future__ import annotations

import logging
import time

from agent.comms.base import Publisher
from agent.config.settings import TrackingConfig
from agent.events import FaceResult
from agent.sources.base import Frame
from agent.tracking.presence import PresencePublisher
from agent.tracking.summary import MinuteSummary
from agent.tracking.track_events import TrackEventPublisher
from agent.tracking.tracker import FaceTracker

log = logging.getLogger(__name__)


class TrackingHook:
    """``on_faces`` hook; call :meth:`close` once the loop has ended (ends the open tracks)."""

    def __init__(self, config: TrackingConfig, publisher: Publisher, *, device_id: str, boot_id: str) -> None:
        self.tracker = FaceTracker(
            iou_threshold=config.iou_threshold,
            max_center_distance=config.max_center_distance,
            max_missed=config.max_missed,
            min_hits=config.min_hits,
            ema_alpha=config.ema_alpha,
        )
        self.events = TrackEventPublisher(
            publisher,
            device_id=device_id,
            boot_id=boot_id,
            subtopic=config.events_subtopic,
            update_interval_s=config.update_interval_s,
            update_min_gap_s=config.update_min_gap_s,
        )
        self.presence = PresencePublisher(publisher, device_id=device_id, subtopic=config.presence_subtopic)
        self.summary = (
            MinuteSummary(
                publisher,
                device_id=device_id,
                interval_s=config.summary_interval_s,
                subtopic=config.summary_subtopic,
            )
            if config.summary_interval_s > 0
            else None
        )
        self._last_ts = time.time()
        self._closed = False

    def __call__(self, frame: Frame, faces: list[FaceResult]) -> list[FaceResult]:
        step = self.tracker.update(frame.timestamp, faces)
        self._last_ts = frame.timestamp
        self.events.step(frame.timestamp, step)
        self.presence.update(frame.timestamp, step.active)
        if self.summary is not None:
            self.summary.observe(frame.timestamp, step)
        return step.faces

    def close(self) -> None:
        """End open tracks (``end`` events), clear presence, publish the partial summary window."""
        if self._closed:
            return
        self._closed = True
        ts = max(self._last_ts, max((t.last_ts for t in self.tracker.tracks), default=0.0))
        for track in self.tracker.finish():
            self.events.end(track, ts)
        self.presence.update(ts, [])
        if self.summary is not None:
            self.summary.flush()
        log.info("tracking: %s track events", self.events.counts)
