"""What may appear in an MQTT topic name, checked before a message is accepted and before it is sent.

Why the agent checks instead of leaving it to the broker: a broker that meets a topic it will not
take does not answer with an error. Mosquitto drops the connection (MQTT 3.1.1 and 5 alike), and
paho re-sends the same message after every reconnect, so one bad topic blocks every event behind it.
And a topic under ``$`` (``$SYS/...``) is acknowledged by Mosquitto and then delivered to nobody.

The rules: MQTT's (UTF-8, no NUL, at most 65535 bytes, no ``+``/``#`` in a published name), plus
what the spec says SHOULD NOT appear and Mosquitto refuses in practice: control characters
U+0001-U+001F and U+007F-U+009F, and Unicode non-characters (U+FDD0-U+FDEF, U+xxFFFE/U+xxFFFF).
Configured pieces (prefix, device id, subtopics) must also have no empty levels (``a//b``).
"""

from __future__ import annotations

MAX_TOPIC_BYTES = 65535
"""MQTT encodes a topic's length in two bytes."""


def _char_problem(text: str) -> str | None:
    for ch in text:
        cp = ord(ch)
        if cp == 0:
            return "contains NUL"
        if cp <= 0x1F or 0x7F <= cp <= 0x9F:
            return f"contains the control character U+{cp:04X}"
        if 0xD800 <= cp <= 0xDFFF:
            return f"contains U+{cp:04X}, a lone surrogate that is not valid UTF-8"
        if 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE:
            return f"contains the Unicode non-character U+{cp:04X}"
        if ch in "+#":
            return f"contains the MQTT wildcard {ch!r}"
    return None


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` can never be published (one line), or None.

    For full topic names: the ones built at run time, and rows an earlier version stored.
    """
    if not topic:
        return "is empty"
    if topic.startswith("$"):
        return "starts with '$', which is reserved for the broker (e.g. $SYS): no subscriber would see it"
    return _content_problem(topic, "")


def _content_problem(text: str, of_what: str) -> str | None:
    """A character MQTT or the broker refuses, or more bytes than a whole topic may have."""
    problem = _char_problem(text)
    if problem:
        return problem
    size = len(text.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        return f"is {size} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}{of_what}"
    return None


def part_problem(part: str, *, single_level: bool = False) -> str | None:
    """Why a configured piece of a topic (prefix, device id, subtopic) is unusable, or None.

    Stricter than :func:`topic_problem`: empty levels are refused too, since ``a//b`` is almost
    always a typo that subscribers to ``a/+/b`` would never match.
    """
    if not part:
        return "must not be empty"
    if single_level and "/" in part:
        return "must be a single topic level (no '/')"
    if "" in part.split("/"):
        return "has an empty topic level ('//', or '/' at the start or end)"
    return _content_problem(part, " for a whole topic")
