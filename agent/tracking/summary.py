"""Per-minute aggregates on ``<prefix>/<device_id>/summary``: counts, never faces or frames.

Privacy-friendly by construction: a day of summaries is 1440 small documents of numbers, enough to
chart moods and footfall without storing or forwarding anything that identifies a person. Windows
are aligned to wall-clock multiples of ``interval_s`` so several devices' minutes line up.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agent.comms.base import Publisher
from agent.events import iso_utc_ms
from agent.model_contract import EMOTIONS, GENDERS
from agent.tracking.tracker import TrackerStep

SUMMARY_SCHEMA = "facecast.summary/1"


@dataclass
class _Window:
    index: int
    people: dict[int, tuple[str, str]] = field(default_factory=dict)
    """track id -> (smoothed emotion, smoothed gender) at its latest sighting in the window."""
    face_frames: Counter[str] = field(default_factory=Counter)
    frames: int = 0


class MinuteSummary:
    """Accumulates tracker steps; publishes a window when the first frame of the next one arrives."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        device_id: str,
        interval_s: float = 60.0,
        subtopic: str = "summary",
        gender: bool = True,
        min_group_size: int | None = None,
    ) -> None:
        """``gender=False``: no gender counts. ``min_group_size`` (``privacy.mode: aggregate``):
        every count of people below it, zero included, is sent as null, and the per-emotion face
        sightings (one person in view for a minute makes hundreds) are left out."""
        self._publisher = publisher
        self._gender = gender
        self._k = min_group_size
        self._device_id = device_id
        self._interval = interval_s
        self._subtopic = subtopic
        self._window: _Window | None = None
        self.published = 0

    def observe(self, ts: float, step: TrackerStep) -> None:
        index = math.floor(ts / self._interval)
        if self._window is not None and self._window.index != index:
            self.flush()
        if self._window is None:
            self._window = _Window(index)
        w = self._window
        w.frames += 1
        confirmed = {t.id for t in step.active}
        for face in step.faces:
            if face.track_id in confirmed and face.smoothed is not None:
                w.people[face.track_id] = (face.smoothed.emotion, face.smoothed.gender)
                w.face_frames[face.smoothed.emotion] += 1

    def flush(self) -> None:
        """Publish the current window (if any frame fell in it) and start afresh."""
        w, self._window = self._window, None
        if w is None:
            return
        # Retained: Home Assistant (aggregate mode) and a dashboard opened later start from it.
        self._publisher.publish(self._subtopic, self.document(w), retain=True)
        self.published += 1

    def document(self, w: _Window) -> dict[str, Any]:
        emotions = Counter(e for e, _ in w.people.values())
        genders = Counter(g for _, g in w.people.values())
        start = w.index * self._interval
        doc: dict[str, Any] = {
            "schema": SUMMARY_SCHEMA,
            "device_id": self._device_id,
            "start": iso_utc_ms(start),
            "end": iso_utc_ms(start + self._interval),
            "interval_s": self._interval,
            "frames": w.frames,
            "people": self._count(len(w.people)),
            "emotion": {e: self._count(emotions.get(e, 0)) for e in EMOTIONS},
        }
        if self._gender:
            doc["gender"] = {g: self._count(genders.get(g, 0)) for g in GENDERS}
        if self._k is None:
            doc["face_frames"] = {e: w.face_frames.get(e, 0) for e in EMOTIONS}
        else:
            doc["min_group_size"] = self._k
        return doc

    def _count(self, n: int) -> int | None:
        return None if self._k is not None and n < self._k else n
