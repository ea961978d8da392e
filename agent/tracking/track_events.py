"""Per-track events on ``<prefix>/<device_id>/events``: ``new``, ``update`` and ``end``.

One message when a person appears, one when they leave, and in between only when their smoothed
label changes (debounced) or every ``update_interval_s``: a few messages per person instead of one
per frame, which is what Home Assistant automations and Node-RED flows want to react to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from agent.comms.base import Publisher
from agent.events import iso_utc_ms
from agent.tracking.tracker import Track, TrackerStep

log = logging.getLogger(__name__)

TRACK_SCHEMA = "facecast.track/1"
EventType = Literal["new", "update", "end"]


def track_document(track: Track, *, ended: bool = False, gender: bool = True) -> dict[str, Any]:
    """The ``track`` object of an event (see ``schema/track_event.schema.json``); without a
    ``gender`` key when ``gender`` is off (``privacy.gender: false``)."""
    s = track.smoothed
    doc = {
        "id": track.id,
        "start_ts": iso_utc_ms(track.start_ts),
        "last_ts": iso_utc_ms(track.last_ts),
        "end_ts": iso_utc_ms(track.last_ts) if ended else None,
        "duration_s": round(max(0.0, track.last_ts - track.start_ts), 3),
        "frames": track.frames,
        "emotion": {
            "label": s.emotion,
            "score": round(s.emotion_score, 4),
            "dominant": track.dominant_emotion(),
            "share": {k: round(v, 4) for k, v in sorted(track.emotion_share().items())},
        },
        "gender": {"label": s.gender, "confidence": round(s.gender_score, 4)},
        "best_score": round(track.best_score, 4),
    }
    if not gender:
        del doc["gender"]
    return doc


@dataclass
class _Sent:
    ts: float
    emotion: str
    gender: str


class TrackEventPublisher:
    """Turns tracker steps into ``new``/``update``/``end`` messages (QoS per the publisher's default)."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        device_id: str,
        boot_id: str,
        subtopic: str = "events",
        update_interval_s: float = 5.0,
        update_min_gap_s: float = 1.0,
        gender: bool = True,
    ) -> None:
        self._publisher = publisher
        self._gender = gender
        self._device_id = device_id
        self._boot_id = boot_id
        self._subtopic = subtopic
        self._interval = update_interval_s
        self._min_gap = update_min_gap_s
        self._sent: dict[int, _Sent] = {}
        self.counts: dict[str, int] = {"new": 0, "update": 0, "end": 0}

    def step(self, ts: float, step: TrackerStep) -> bool:
        """Publish what ``step`` warrants; True when a visible label or the set of people changed."""
        changed = False
        started = {t.id for t in step.started}
        for track in step.started:
            self._emit("new", track, ts)
            changed = True
        for track in step.active:
            if track.id in started or track.missed > 0:
                continue
            sent = self._sent.get(track.id)
            if sent is None:  # confirmed before we were attached: announce it now
                self._emit("new", track, ts)
                changed = True
                continue
            s = track.smoothed
            # Without gender, its change is no reason to send: an update that shows no change
            # would tell that the hidden label flipped.
            label_changed = s.emotion != sent.emotion or (self._gender and s.gender != sent.gender)
            since = ts - sent.ts
            if (label_changed and since >= self._min_gap) or since >= self._interval:
                self._emit("update", track, ts)
                changed = changed or label_changed
        for track in step.ended:
            self.end(track, ts)
            changed = True
        return changed

    def end(self, track: Track, ts: float) -> None:
        self._emit("end", track, ts)
        self._sent.pop(track.id, None)

    def _emit(self, kind: EventType, track: Track, ts: float) -> None:
        s = track.smoothed
        payload = {
            "schema": TRACK_SCHEMA,
            "type": kind,
            "device_id": self._device_id,
            "boot_id": self._boot_id,
            "ts": iso_utc_ms(ts),
            "track": track_document(track, ended=kind == "end", gender=self._gender),
        }
        self._publisher.publish(self._subtopic, payload)
        self.counts[kind] += 1
        if kind != "end":
            self._sent[track.id] = _Sent(ts=ts, emotion=s.emotion, gender=s.gender)
        log.debug("track %d: %s (%s, %s)", track.id, kind, s.emotion, s.gender if self._gender else "-")
