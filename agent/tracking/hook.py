"""The tracking layer as two hooks: tracker (``on_faces``), then its messages (``on_frame``).

Attached by :func:`agent.extensions.attach_extensions`. The frame loop only sees a function that
annotates a frame's faces with ``track_id`` and smoothed labels, and one that runs after the frame
event went out, so a subscriber sees the raw frame before anything derived from it.
"""

from __future__ import annotations

import logging
import time

from agent.comms.base import Publisher
from agent.config.settings import PrivacyConfig, TrackingConfig
from agent.events import FaceResult
from agent.pipeline import FrameResult
from agent.sources.base import Frame
from agent.tracking.presence import PresencePublisher
from agent.tracking.summary import MinuteSummary
from agent.tracking.track_events import TrackEventPublisher
from agent.tracking.tracker import FaceTracker, TrackerStep

log = logging.getLogger(__name__)


class TrackingHook:
    """``self`` as ``on_faces``, :meth:`publish` as ``on_frame``; :meth:`close` after the loop."""

    def __init__(
        self,
        config: TrackingConfig,
        publisher: Publisher,
        *,
        device_id: str,
        boot_id: str,
        privacy: PrivacyConfig | None = None,
    ) -> None:
        """``privacy.mode: aggregate`` keeps the per-person messages (events, presence) on the device:
        only the summary's counts go out, below ``min_group_size`` withheld."""
        privacy = privacy or PrivacyConfig()
        gender = privacy.gender
        per_person = privacy.mode != "aggregate"
        self.tracker = FaceTracker(
            iou_threshold=config.iou_threshold,
            max_center_distance=config.max_center_distance,
            max_missed=config.max_missed,
            min_hits=config.min_hits,
            ema_alpha=config.ema_alpha,
        )
        self.events = (
            TrackEventPublisher(
                publisher,
                device_id=device_id,
                boot_id=boot_id,
                subtopic=config.events_subtopic,
                update_interval_s=config.update_interval_s,
                update_min_gap_s=config.update_min_gap_s,
                gender=gender,
            )
            if per_person
            else None
        )
        self.presence = (
            PresencePublisher(
                publisher, device_id=device_id, subtopic=config.presence_subtopic, gender=gender
            )
            if per_person
            else None
        )
        self.summary = (
            MinuteSummary(
                publisher,
                device_id=device_id,
                interval_s=config.summary_interval_s,
                subtopic=config.summary_subtopic,
                gender=gender,
                min_group_size=None if per_person else privacy.min_group_size,
            )
            if config.summary_interval_s > 0
            else None
        )
        self._last_ts = time.time()
        self._pending: tuple[float, TrackerStep] | None = None
        self._closed = False

    def __call__(self, frame: Frame, faces: list[FaceResult]) -> list[FaceResult]:
        """``on_faces``: annotate; the messages wait for :meth:`publish` (after the frame event)."""
        step = self.tracker.update(frame.timestamp, faces, new_scene=frame.new_scene)
        self._pending = (frame.timestamp, step)
        self._last_ts = frame.timestamp
        return step.faces

    def publish(self, _result: FrameResult | None = None) -> None:
        """``on_frame``: the per-track messages of the frame just published (derived after raw)."""
        if self._pending is None:
            return
        ts, step = self._pending
        self._pending = None
        if self.events is not None:
            self.events.step(ts, step)
        if self.presence is not None:
            self.presence.update(ts, step.active)
        if self.summary is not None:
            self.summary.observe(ts, step)

    def close(self) -> None:
        """End open tracks (``end`` events), clear presence, publish the partial summary window."""
        if self._closed:
            return
        self._closed = True
        self.publish()
        ts = max(self._last_ts, max((t.last_ts for t in self.tracker.tracks), default=0.0))
        for track in self.tracker.finish():
            if self.events is not None:
                self.events.end(track, ts)
        if self.presence is not None:
            self.presence.update(ts, [])
        if self.summary is not None:
            self.summary.flush()
        if self.events is not None:
            log.info("tracking: %s track events", self.events.counts)
