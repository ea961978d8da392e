"""Reading what arrives on the broker, defensively: any client may publish anything on any topic.

Each reader takes the raw payload of one kind and returns the few fields the page shows, each of
a known type, or raises :class:`MalformedError`. So a message such as ``{"tracks": [{}]}``, a wrong
type, a payload that is not JSON or one of megabytes is counted and skipped on the server, and the
page only ever receives shapes it can draw. (A KeyError on paho's thread once stopped every update
while the page still said "broker connected".)
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

MAX_PAYLOAD = 256 * 1024
"""Bigger than any message an agent sends (a presence of 50 people is ~6 KB): the rest is refused
unread, so one huge message cannot stall the subscriber parsing it."""
MAX_TRACKS = 100
MAX_TEXT = 64


class MalformedError(ValueError):
    """A payload that is not what its topic promises; the message says what is wrong."""


def _json(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD:
        raise MalformedError(f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedError(f"not JSON ({type(exc).__name__})") from None


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError(f"{what} is {type(value).__name__}, not an object")
    return value


def _int(value: Any, what: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedError(f"{what} is {value!r:.40}, not a count")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedError(f"{what} is {value!r:.40}, not a number")
    return float(value)


def _text(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise MalformedError(f"{what} is {value!r:.40}, not a short text")
    return value


def _label(value: Any, what: str) -> str:
    """``{"label": "happy", ...}`` -> ``"happy"``."""
    text = _text(_object(value, what).get("label"), f"{what}.label")
    assert text is not None
    return text


def timestamp(value: Any, what: str) -> float:
    """``2026-11-28T10:15:02.123Z`` -> epoch seconds."""
    text = _text(value, what)
    assert text is not None
    try:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise MalformedError(f"{what} is {text!r:.40}, not an ISO timestamp") from None
    return parsed.timestamp()


def read_status(payload: bytes) -> dict[str, Any]:
    """``online`` / ``offline`` / ``stopped`` as text (what the agents send), or a JSON string."""
    if len(payload) > MAX_TEXT:
        raise MalformedError(f"{len(payload)} bytes, too long for a status")
    text = payload.decode("utf-8", "replace").strip()
    if text.startswith('"'):
        text = str(_json(payload))
    return {"status": _text(text, "status")}


def read_presence(payload: bytes) -> dict[str, Any]:
    doc = _object(_json(payload), "presence")
    tracks = doc.get("tracks", [])
    if not isinstance(tracks, list) or len(tracks) > MAX_TRACKS:
        raise MalformedError("tracks is not a list of at most 100")
    people = []
    for i, raw in enumerate(tracks):
        track = _object(raw, f"tracks[{i}]")
        person: dict[str, Any] = {
            "id": _int(track.get("id"), f"tracks[{i}].id"),
            "emotion": _label(track.get("emotion"), f"tracks[{i}].emotion"),
        }
        if track.get("gender") is not None:  # absent with privacy.gender: false
            person["gender"] = _label(track["gender"], f"tracks[{i}].gender")
        people.append(person)
    out: dict[str, Any] = {
        "faces": _int(doc.get("faces", len(people)), "faces"),
        "dominant_emotion": _text(doc.get("dominant_emotion"), "dominant_emotion", optional=True),
        "tracks": people,
    }
    if "ts" in doc:
        out["ts"] = timestamp(doc["ts"], "ts")
    return out


def read_stats(payload: bytes) -> dict[str, Any]:
    doc = _object(_json(payload), "stats")
    latency = _object(doc.get("latency_ms", {}), "latency_ms")
    medians = {}
    for stage in ("resize", "detect", "classify"):
        if stage in latency:
            medians[stage] = _number(_object(latency[stage], stage).get("median"), f"{stage}.median")
    out: dict[str, Any] = {
        "fps": _number(doc.get("fps_processed", doc.get("fps", 0)), "fps_processed"),
        "buffer_depth": _int(doc.get("buffer_depth", 0), "buffer_depth"),
        "latency_ms": medians,
        "final": bool(doc.get("final", False)),
    }
    if "ts" in doc:
        out["ts"] = timestamp(doc["ts"], "ts")
    return out


def read_event(payload: bytes) -> dict[str, Any]:
    doc = _object(_json(payload), "event")
    track = _object(doc.get("track"), "track")
    emotion = _object(track.get("emotion"), "track.emotion")
    out: dict[str, Any] = {
        "type": _text(doc.get("type"), "type"),
        "id": _int(track.get("id"), "track.id"),
        "emotion": _text(emotion.get("label"), "track.emotion.label"),
        "dominant": _text(emotion.get("dominant", emotion.get("label")), "track.emotion.dominant"),
        "frames": _int(track.get("frames", 0), "track.frames"),
    }
    if track.get("gender") is not None:
        out["gender"] = _label(track["gender"], "track.gender")
    if "ts" in doc:
        out["ts"] = timestamp(doc["ts"], "ts")
    return out


def read_summary(payload: bytes) -> dict[str, Any]:
    """A window's people per emotion (null = withheld, ``privacy.mode: aggregate``)."""
    doc = _object(_json(payload), "summary")
    start, end = timestamp(doc.get("start"), "start"), timestamp(doc.get("end"), "end")
    if end <= start:
        raise MalformedError("end is not after start")
    emotion = _object(doc.get("emotion"), "emotion")
    if len(emotion) > 32:
        raise MalformedError("emotion has too many labels")
    counts = {}
    for label, n in emotion.items():
        count = _int(n, f"emotion.{label:.20}", optional=True)
        if count:
            counts[_text(label, "emotion label")] = count
    return {
        "start": start,
        "end": end,
        "people": _int(doc.get("people"), "people", optional=True),
        "emotion": counts,
    }


READERS: Mapping[str, Callable[[bytes], dict[str, Any]]] = types.MappingProxyType(
    {
        "status": read_status,
        "presence": read_presence,
        "stats": read_stats,
        "events": read_event,
        "summary": read_summary,
    }
)
