"""The face tracker: stable ids across frames, per-track smoothed labels, start and end of a track.

A track is *tentative* until it has been seen ``min_hits`` times (a one-frame false detection never
becomes a person), *confirmed* after that, and ends after ``max_missed`` processed frames without its
face. Prediction is constant velocity in pixels per processed frame, so two faces walking past each
other keep their ids through the crossing instead of swapping at the point of overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from agent.events import FaceResult, SmoothedLabels
from agent.model_contract import GENDERS
from agent.tracking.association import Box, match
from agent.tracking.smoothing import EmaProbabilities, binary_probs

log = logging.getLogger(__name__)


@dataclass
class Track:
    """One person, as seen so far. Times are the frames' capture timestamps (epoch seconds)."""

    id: int
    box: Box
    start_ts: float
    last_ts: float
    emotion: EmaProbabilities
    gender: EmaProbabilities
    velocity: tuple[float, float] = (0.0, 0.0)
    frames: int = 1
    missed: int = 0
    confirmed: bool = False
    best_score: float = 0.0
    emotion_seconds: dict[str, float] = field(default_factory=dict)
    """Time spent under each smoothed emotion label (the basis of the time shares)."""
    emotion_frames: dict[str, int] = field(default_factory=dict)
    raw_flips: int = 0
    """Changes of the raw per-frame emotion label between consecutive sightings."""
    smoothed_flips: int = 0
    _raw_label: str | None = None
    _smoothed_label: str | None = None

    @property
    def smoothed(self) -> SmoothedLabels:
        emotion, e_score = self.emotion.top()
        gender, g_score = self.gender.top()
        return SmoothedLabels(emotion=emotion, emotion_score=e_score, gender=gender, gender_score=g_score)

    def emotion_share(self) -> dict[str, float]:
        """Share of the track's time under each smoothed emotion (by frames while no time has passed)."""
        total = sum(self.emotion_seconds.values())
        if total > 0:
            return {k: v / total for k, v in self.emotion_seconds.items() if v > 0}
        n = sum(self.emotion_frames.values())
        return {k: v / n for k, v in self.emotion_frames.items()} if n else {}

    def dominant_emotion(self) -> str:
        share = self.emotion_share()
        return max(share, key=share.__getitem__) if share else self.smoothed.emotion

    def predicted(self) -> Box:
        steps = self.missed + 1
        x, y, w, h = self.box
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)

    def observe(self, face: FaceResult, ts: float, frames_since: int) -> None:
        """Fold one sighting in: box/velocity, smoothed probabilities, time per label, flip counts."""
        a = face.attributes
        if self._smoothed_label is not None and ts > self.last_ts:
            self.emotion_seconds[self._smoothed_label] = (
                self.emotion_seconds.get(self._smoothed_label, 0.0) + ts - self.last_ts
            )
        old_cx, old_cy = self.box[0] + self.box[2] / 2, self.box[1] + self.box[3] / 2
        new_box: Box = tuple(float(v) for v in face.box)  # type: ignore[assignment]
        if self.frames > 0 and frames_since > 0:
            vx = (new_box[0] + new_box[2] / 2 - old_cx) / frames_since
            vy = (new_box[1] + new_box[3] / 2 - old_cy) / frames_since
            self.velocity = (0.5 * self.velocity[0] + 0.5 * vx, 0.5 * self.velocity[1] + 0.5 * vy)
        self.box = new_box
        self.last_ts = ts
        self.missed = 0
        self.best_score = max(self.best_score, float(face.score))
        self.emotion.update(a.emotion_probs)
        self.gender.update(binary_probs(a.gender, a.gender_score, GENDERS))
        if self._raw_label is not None and a.emotion != self._raw_label:
            self.raw_flips += 1
        self._raw_label = a.emotion
        label = self.emotion.top()[0]
        if self._smoothed_label is not None and label != self._smoothed_label:
            self.smoothed_flips += 1
        self._smoothed_label = label
        self.emotion_frames[label] = self.emotion_frames.get(label, 0) + 1


@dataclass(frozen=True)
class TrackerStep:
    """What one frame changed: annotated faces, tracks confirmed now, tracks that ended now."""

    faces: list[FaceResult]
    started: list[Track]
    ended: list[Track]
    active: list[Track]
    """Confirmed tracks still alive (seen this frame or within ``max_missed``)."""


class FaceTracker:
    """Assigns ``track_id`` and smoothed labels to each frame's faces. Not thread-safe (one loop)."""

    def __init__(
        self,
        *,
        iou_threshold: float = 0.2,
        max_center_distance: float = 0.75,
        max_missed: int = 10,
        min_hits: int = 2,
        ema_alpha: float = 0.3,
    ) -> None:
        self.iou_threshold = iou_threshold
        self.max_center_distance = max_center_distance
        self.max_missed = max_missed
        self.min_hits = min_hits
        self.ema_alpha = ema_alpha
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def update(self, ts: float, faces: Sequence[FaceResult], *, new_scene: bool = False) -> TrackerStep:
        """Associate ``faces`` (one processed frame, capture time ``ts``) with the live tracks.

        ``new_scene``: the frame shows a different scene (the next photo of a folder), so every live
        track ends here and each face starts a track of its own, whatever its position."""
        ended: list[Track] = self.finish() if new_scene else []
        tracks = self._tracks
        pairs, lost, fresh = match(
            [t.predicted() for t in tracks],
            [tuple(float(v) for v in f.box) for f in faces],  # type: ignore[misc]
            min_iou=self.iou_threshold,
            max_distance=self.max_center_distance,
        )
        out: list[FaceResult | None] = [None] * len(faces)
        started: list[Track] = []
        for t_idx, f_idx in pairs:
            track = tracks[t_idx]
            track.frames += 1
            track.observe(faces[f_idx], ts, track.missed + 1)
            if not track.confirmed and track.frames >= self.min_hits:
                track.confirmed = True
                started.append(track)
            out[f_idx] = replace(faces[f_idx], track_id=track.id, smoothed=track.smoothed)
        keep: list[Track] = []
        lost_set = set(lost)
        for i, track in enumerate(tracks):
            if i in lost_set:
                track.missed += 1
                # A tentative track that misses once was most likely a false detection.
                if (not track.confirmed) or track.missed > self.max_missed:
                    if track.confirmed:
                        ended.append(track)
                    continue
            keep.append(track)
        for f_idx in fresh:
            track = self._new_track(faces[f_idx], ts)
            keep.append(track)
            if track.confirmed:
                started.append(track)
            out[f_idx] = replace(faces[f_idx], track_id=track.id, smoothed=track.smoothed)
        self._tracks = keep
        annotated = [f for f in out if f is not None]
        return TrackerStep(
            faces=annotated, started=started, ended=ended, active=[t for t in keep if t.confirmed]
        )

    def finish(self) -> list[Track]:
        """End every confirmed track (the source ended or the agent stops); returns them."""
        ended = [t for t in self._tracks if t.confirmed]
        self._tracks = []
        return ended

    def _new_track(self, face: FaceResult, ts: float) -> Track:
        track = Track(
            id=self._next_id,
            box=tuple(float(v) for v in face.box),  # type: ignore[arg-type]
            start_ts=ts,
            last_ts=ts,
            emotion=EmaProbabilities(self.ema_alpha),
            gender=EmaProbabilities(self.ema_alpha),
            frames=0,
        )
        self._next_id += 1
        track.observe(face, ts, 0)
        track.frames = 1
        track.confirmed = self.min_hits <= 1
        return track
