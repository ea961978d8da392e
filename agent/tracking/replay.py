"""Replay a video file through the real frame loop on the file's own timeline.

A file is decoded faster (or slower) than it was filmed; anything that depends on time (update
intervals, minute windows, time shares) would then measure the machine, not the scene. Here each
frame's timestamp is ``start + index / fps`` of the file, and every message is recorded in memory,
so the tracking bench and tests count exactly what a live camera filming that scene would publish.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.config.settings import AgentConfig
from agent.events import SeqAllocator
from agent.pipeline import Pipeline, PipelineHooks, PipelineOptions
from agent.sources.base import Frame, FrameSource
from agent.tracking.hook import TrackingHook
from agent.tracking.tracker import Track


@dataclass(frozen=True)
class Message:
    subtopic: str
    payload: Mapping[str, Any] | str
    retain: bool


class RecordingPublisher:
    """A :class:`~agent.comms.base.Publisher` that keeps every message in memory (in order)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        return None

    def publish(
        self, subtopic: str, payload: Mapping[str, Any] | str, *, qos: int | None = None, retain: bool = False
    ) -> None:
        with self._lock:
            self.messages.append(Message(subtopic, payload, retain))

    def close(self, timeout: float = 5.0) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"sink": "memory", "connected": True, "published": len(self.messages), "buffered": 0}

    def on(self, subtopic: str) -> list[Any]:
        with self._lock:
            return [m.payload for m in self.messages if m.subtopic == subtopic]


class FileTimelineSource:
    """Every frame of a video file, stamped ``start_ts + index / fps``."""

    live = False

    def __init__(
        self, path: Path, *, start_ts: float = 1_800_000_000.0, max_frames: int | None = None
    ) -> None:
        self.path = path
        self.name = path.name
        self._start = start_ts
        self._max = max_frames
        self._stop = threading.Event()
        self._read = 0
        cap = cv2.VideoCapture(str(path))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        cap.release()

    def __iter__(self) -> Iterator[Frame]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while not self._stop.is_set() and (self._max is None or index < self._max):
                ok, image = cap.read()
                if not ok:
                    return
                self._read += 1
                yield Frame(
                    index=index,
                    timestamp=self._start + index / self.fps,
                    image=np.asarray(image, dtype=np.uint8),
                )
                index += 1
        finally:
            cap.release()

    def close(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, int]:
        return {"read": self._read}


@dataclass
class ReplayResult:
    publisher: RecordingPublisher
    tracks: dict[int, Track] = field(default_factory=dict)
    """Every track the tracker created (tentative ones included), by id."""
    frames: int = 0

    def confirmed(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.confirmed]


def replay(
    path: Path,
    config: AgentConfig,
    *,
    components: tuple[Any, Any],
    state_dir: Path,
    max_frames: int | None = None,
) -> ReplayResult:
    """Run ``(detector, classifier)`` over ``path`` with the tracking hook; record everything."""
    detector, classifier = components
    publisher = RecordingPublisher()
    seq = SeqAllocator(state_dir)
    source: FrameSource = FileTimelineSource(path, max_frames=max_frames)
    hook = TrackingHook(config.tracking, publisher, device_id=config.device_id, boot_id=seq.boot_id)
    result = ReplayResult(publisher=publisher)

    def remember(frame: Frame, faces: list[Any]) -> list[Any]:
        for track in hook.tracker.tracks:
            result.tracks[track.id] = track
        return faces

    pipeline = Pipeline(
        source,
        detector,
        classifier,
        publisher,
        seq,
        PipelineOptions(device_id=config.device_id, max_width=config.source.max_width, prefetch=0),
        PipelineHooks(on_faces=[hook, remember], on_frame=[hook.publish]),
    )
    stats = pipeline.run()
    hook.close()
    result.frames = stats.frames
    return result
