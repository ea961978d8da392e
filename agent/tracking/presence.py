"""Who is in view right now, retained on ``<prefix>/<device_id>/presence``, sent only on change.

A retained state document is what a Home Assistant sensor or a dashboard opening late needs: the
current count and labels, without replaying events. It changes when a person arrives or leaves or
a smoothed label changes, so it costs a handful of messages per person.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.comms.base import Publisher
from agent.events import iso_utc_ms
from agent.tracking.tracker import Track

PRESENCE_SCHEMA = "facecast.presence/1"


class PresencePublisher:
    def __init__(
        self, publisher: Publisher, *, device_id: str, subtopic: str = "presence", gender: bool = True
    ) -> None:
        """``gender=False`` (``privacy.gender: false``): no gender in the document, and a change of
        gender alone sends nothing."""
        self._publisher = publisher
        self._gender = gender
        self._device_id = device_id
        self._subtopic = subtopic
        self._last_key: tuple[tuple[int, str, str], ...] | None = None
        self._last_gender: str | None = None
        self.published = 0

    def update(self, ts: float, tracks: list[Track]) -> None:
        """Publish (retained) if the people in view or their smoothed labels differ from last time."""
        labels = [(t.id, t.smoothed) for t in sorted(tracks, key=lambda t: t.id)]
        key = tuple((i, s.emotion, s.gender if self._gender else "") for i, s in labels)
        if key == self._last_key:
            return
        self._last_key = key
        if tracks:
            newest = max(tracks, key=lambda t: (t.last_ts, t.id))
            self._last_gender = newest.smoothed.gender
        self._publisher.publish(self._subtopic, self.document(ts, tracks), retain=True)
        self.published += 1

    def document(self, ts: float, tracks: list[Track]) -> dict[str, Any]:
        counts = Counter(t.smoothed.emotion for t in tracks)
        dominant = None
        if counts:
            # Most people share it; a tie goes to the more confident label.
            best = {t.smoothed.emotion: t.smoothed.emotion_score for t in tracks}
            dominant = max(counts, key=lambda e: (counts[e], best[e]))
        doc: dict[str, Any] = {
            "schema": PRESENCE_SCHEMA,
            "device_id": self._device_id,
            "ts": iso_utc_ms(ts),
            "faces": len(tracks),
            "dominant_emotion": dominant,
            "last_gender": self._last_gender,
            "tracks": [
                {
                    "id": t.id,
                    "emotion": {"label": t.smoothed.emotion, "score": round(t.smoothed.emotion_score, 4)},
                    "gender": {"label": t.smoothed.gender, "score": round(t.smoothed.gender_score, 4)},
                    "since": iso_utc_ms(t.start_ts),
                }
                for t in sorted(tracks, key=lambda t: t.id)
            ],
        }
        if not self._gender:
            del doc["last_gender"]
            for track in doc["tracks"]:
                del track["gender"]
        return doc
