"""The publisher interface the frame loop talks to, so MQTT and stdout are interchangeable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Publisher(Protocol):
    """A sink for events.

    Contract: once ``publish`` returns, the event is *accepted*: it must reach the sink eventually
    (in order), even across a broker outage or an agent restart, unless the bounded buffer overflows
    (then the oldest are dropped and counted).
    """

    def start(self) -> None:
        """Begin connecting. Never raises because a broker is unreachable (it buffers instead)."""

    def publish(
        self,
        subtopic: str,
        payload: Mapping[str, Any] | str,
        *,
        qos: int | None = None,
        retain: bool = False,
    ) -> None:
        """Publish to ``<prefix>/<device_id>/<subtopic>`` (``frames``, ``events``, ``stats``...)."""

    def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within ``timeout``, announce ``stopped``, disconnect."""

    def stats(self) -> dict[str, Any]:
        """Counters for health reporting (published, buffered, dropped, reconnects...)."""
