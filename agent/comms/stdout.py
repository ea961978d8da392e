"""A publisher that prints events as JSON lines, for piping into ``jq`` or a log collector.

Format (chosen so one stream can carry every subtopic and still be filtered with ``jq``): one JSON
object per line, ``{"topic": "<prefix>/<device_id>/<subtopic>", "payload": <event>}``. A mapping
payload is embedded as an object (not a string); a string payload that is itself JSON is embedded
parsed, any other string as a JSON string. Each line is flushed at once, so ``facecast run --sink
stdout | jq -c .payload`` sees frames live. Lifecycle messages (``online``/``stopped``) go to the
log (stderr), never to the stream, so stdout carries nothing but events.

There is nothing to buffer: a write either succeeds or raises (e.g. ``BrokenPipeError`` when the
reader went away), which the caller should treat as the end of the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

logger = logging.getLogger(__name__)


class StdoutPublisher:
    """JSON-lines implementation of :class:`~agent.comms.base.Publisher`."""

    def __init__(self, device_id: str, topic_prefix: str = "facecast", stream: TextIO | None = None) -> None:
        self._prefix = f"{topic_prefix.strip('/')}/{device_id}"
        self._stream = stream
        self._lock = threading.Lock()
        self._published = 0
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Nothing to connect to; logs the destination once."""
        self._started = True
        logger.info("publishing %s/* as JSON lines on %s", self._prefix, self._name())

    def publish(
        self,
        subtopic: str,
        payload: Mapping[str, Any] | str,
        *,
        qos: int | None = None,
        retain: bool = False,
    ) -> None:
        """Write one line ``{"topic": ..., "payload": ...}`` and flush it. ``qos``/``retain`` are ignored."""
        if self._closed:
            raise RuntimeError("StdoutPublisher is closed")
        body: Any
        if isinstance(payload, str):
            try:
                body = json.loads(payload)
            except ValueError:
                body = payload
        else:
            body = payload
        line = json.dumps(
            {"topic": f"{self._prefix}/{subtopic.strip('/')}", "payload": body},
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        stream = self._out()
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
            self._published += 1

    def close(self, timeout: float = 5.0) -> None:
        """Flush the stream (it is not closed: it usually is the process's stdout)."""
        if self._closed:
            return
        self._closed = True
        # A reader that went away, or a stream already closed, is no reason to fail a shutdown.
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError):
            self._out().flush()
        logger.info("stdout publisher stopped after %d event(s)", self._published)

    def stats(self) -> dict[str, Any]:
        """Same keys as the MQTT publisher where they make sense; nothing is ever buffered."""
        with self._lock:
            published = self._published
        return {
            "sink": "stdout",
            "connected": self._started and not self._closed,
            "published": published,
            "buffered": 0,
            "dropped": 0,
            "reconnects": 0,
        }

    def _out(self) -> TextIO:
        # Resolved lazily so a test's or a CLI's redirected sys.stdout is honoured.
        return self._stream if self._stream is not None else sys.stdout

    def _name(self) -> str:
        return str(getattr(self._out(), "name", type(self._out()).__name__))
