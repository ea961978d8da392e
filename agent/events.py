"""Frame events: one JSON document per processed frame, and the sequence numbers that order them.

``seq`` must never repeat for a device, even across restarts, so consumers can de-duplicate QoS 1
redeliveries by ``(device_id, seq)``. :class:`SeqAllocator` reserves blocks of numbers on disk
before handing them out: a crash skips at most one block, it never reuses one. ``boot_id``
additionally names each run.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from agent.classifier import FaceAttributes
from agent.state_dir import full_error, is_disk_full

log = logging.getLogger(__name__)

SCHEMA_VERSION = "facecast.frame/1"
SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "frame_event.schema.json"
SEQ_FILE = "seq.json"
_SEQ_WIDTH = 40  # bytes written in place; {"next": N} with spaces after it (still JSON)


def schema_path() -> Path:
    """Path of the frame-event JSON Schema (draft 2020-12), shipped inside the package."""
    return SCHEMA_FILE


@cache
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def iso_utc_ms(ts: float) -> str:
    """Epoch seconds -> ``2026-11-28T01:02:03.456Z``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SeqAllocator:
    """Monotonic ``seq`` that survives restarts: numbers are reserved in blocks under ``state_dir``."""

    def __init__(self, state_dir: Path, block: int = 1000) -> None:
        self.path = Path(state_dir) / SEQ_FILE
        self.block = max(1, block)
        self._next = self._load()
        self._limit = self._next
        self.boot_id = str(uuid.uuid4())

    def _load(self) -> int:
        try:
            value = int(json.loads(self.path.read_text(encoding="utf-8"))["next"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # We cannot know what was handed out: jump past anything a sane run could have used.
            fallback = int(time.time() * 1000)
            log.warning("seq state %s unreadable (%s); continuing from %d", self.path, exc, fallback)
            return fallback
        return value if value >= 0 else int(time.time() * 1000)

    def _reserve(self) -> None:
        limit = self._next + self.block
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"next": limit}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            self._overwrite(limit, exc)
        self._limit = limit  # only numbers that are on disk are handed out

    def _overwrite(self, limit: int, exc: OSError) -> None:
        """A full disk has no block for the temporary file, but the seq file's own block can be
        rewritten in place. Not atomic: a torn write reads as unreadable, and :meth:`_load` then
        jumps past anything this run could have used."""
        try:
            with open(self.path, "r+b") as fh:
                fh.write(json.dumps({"next": limit}).encode().ljust(_SEQ_WIDTH))
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            raise full_error(self.path.parent, SEQ_FILE, exc) from None
        log.debug("seq state %s rewritten in place: the disk is full", self.path)

    def next(self) -> int:
        if self._next >= self._limit:
            self._reserve()
        value = self._next
        self._next += 1
        return value


@dataclass(frozen=True)
class SmoothedLabels:
    """A track's temporally smoothed labels (see :mod:`agent.tracking`), carried beside the raw ones."""

    emotion: str
    emotion_score: float
    gender: str
    gender_score: float


@dataclass(frozen=True)
class FaceResult:
    """A detected and classified face; ``box`` is ``(x, y, w, h)`` in original-frame pixels.

    ``track_id`` and ``smoothed`` are filled by the tracker (an ``on_faces`` hook) when it runs.
    """

    box: tuple[int, int, int, int]
    score: float
    attributes: FaceAttributes
    track_id: int | None = None
    smoothed: SmoothedLabels | None = None


def face_to_json(face: FaceResult, *, gender: bool = True) -> dict[str, Any]:
    """``gender=False`` (``privacy.gender: false``) leaves the gender out altogether."""
    a = face.attributes
    out: dict[str, Any] = {
        "box": list(face.box),
        "score": round(face.score, 4),
        "emotion": {"label": a.emotion, "score": round(a.emotion_score, 4), "probs": dict(a.emotion_probs)},
    }
    if gender:
        out["gender"] = {"label": a.gender, "score": round(a.gender_score, 4)}
    if face.track_id is not None:
        out["track_id"] = face.track_id
    if face.smoothed is not None:
        s = face.smoothed
        out["emotion"]["smoothed"] = {"label": s.emotion, "score": round(s.emotion_score, 4)}
        if gender:
            out["gender"]["smoothed"] = {"label": s.gender, "score": round(s.gender_score, 4)}
    return out


def build_frame_event(
    *,
    device_id: str,
    boot_id: str,
    seq: int,
    timestamp: float,
    frame_index: int,
    width: int,
    height: int,
    faces: list[FaceResult],
    latency_ms: Mapping[str, float],
    file: str | None = None,
    gender: bool = True,
) -> dict[str, Any]:
    """The event document (see ``schema/frame_event.schema.json``). No image data, by design."""
    frame: dict[str, Any] = {"index": frame_index, "width": width, "height": height}
    if file is not None:
        frame["file"] = file
    return {
        "schema": SCHEMA_VERSION,
        "device_id": device_id,
        "boot_id": boot_id,
        "seq": seq,
        "ts": iso_utc_ms(timestamp),
        "frame": frame,
        "latency_ms": {k: round(float(v), 3) for k, v in latency_ms.items()},
        "faces": [face_to_json(f, gender=gender) for f in faces],
    }
