"""Faces -> people: association across frames, smoothed labels, per-track events and aggregates.

The per-frame stream says "a face, happy 0.41" thirty times a second; consumers (Home Assistant,
dashboards, flows) want "person 7 arrived, mostly neutral, left after 12 s". This package turns one
into the other without touching the frame loop: it attaches as an ``on_faces`` hook.
"""

from agent.tracking.smoothing import EmaProbabilities
from agent.tracking.tracker import FaceTracker, Track, TrackerStep

__all__ = ["EmaProbabilities", "FaceTracker", "Track", "TrackerStep"]
