"""Live sources (V4L2 cameras, RTSP/HTTP streams): a grabber thread keeps only the NEWEST frame.

The consumer never falls behind real time: while it is busy, the grabber overwrites the pending
frame and counts the overwritten one as dropped. If the device disappears, the grabber reopens it
with exponential backoff while the rest of the agent (MQTT session, status) keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import SourceError
from agent.sources.base import Frame

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


class Capture(Protocol):
    """What the grabber needs from a device: one blocking read and a release."""

    def read(self) -> Image | None: ...

    def release(self) -> None: ...


class OpenCVCapture:
    """``cv2.VideoCapture`` reduced to :class:`Capture`; raises ``SourceError`` if it cannot open."""

    def __init__(
        self, target: int | str, *, api: int = cv2.CAP_ANY, width: int = 0, height: int = 0, label: str = ""
    ) -> None:
        self._cap = cv2.VideoCapture(target, api)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video source {label or target}")
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # ask the driver not to queue stale frames

    def read(self) -> Image | None:
        ok, image = self._cap.read()
        return np.asarray(image, dtype=np.uint8) if ok and image is not None else None

    def release(self) -> None:
        self._cap.release()


class LatestFrameSource:
    """Wraps a capture factory in a grabber thread with drop-oldest and reconnect-with-backoff."""

    live = True

    def __init__(
        self,
        name: str,
        opener: Callable[[], Capture],
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        idle_tick: float = 1.0,
        stall_after: float = 20.0,
        max_fps: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_fps`` > 0 hands out at most that many frames a second (the newest each time; the
        ones in between count as dropped), so a 30 fps camera need not keep a Pi's cores busy."""
        self.name = name
        self._opener = opener
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._idle_tick = idle_tick
        # A read or open stuck longer than this is a hung device: idle ticks stop, so the systemd
        # watchdog (WatchdogSec=30s in the unit) restarts the service instead of being fed forever.
        self._stall_after = stall_after
        self._min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self._in_call_since: float | None = None
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._pending: Frame | None = None
        self._counts = {"read": 0, "dropped": 0, "reconnects": 0, "failures": 0}
        # Open once here so a wrong device/URL fails at start with one clear line.
        self._capture: Capture | None = opener()
        self._thread = threading.Thread(target=self._grab_loop, name=f"grab:{name}", daemon=True)
        self._thread.start()

    def _grab_loop(self) -> None:
        index = 0
        delay = self._backoff_initial
        while not self._stop.is_set():
            if self._capture is None:
                try:
                    self._in_call_since = time.monotonic()
                    self._capture = self._opener()
                    self._in_call_since = None
                    log.info("source %s reopened", self.name)
                    self._counts["reconnects"] += 1
                except SourceError as exc:
                    self._in_call_since = None
                    log.debug("reopen %s failed: %s; retry in %.1fs", self.name, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2.0, self._backoff_max)
                    continue
            self._in_call_since = time.monotonic()
            image = self._capture.read()
            self._in_call_since = None
            if image is None:
                self._counts["failures"] += 1
                log.warning("source %s stopped delivering frames; reopening with backoff", self.name)
                self._capture.release()
                self._capture = None
                # a device that opens but yields nothing must back off too, not spin
                self._stop.wait(delay)
                delay = min(delay * 2.0, self._backoff_max)
                continue
            delay = self._backoff_initial  # healthy again: the next outage starts from short waits
            frame = Frame(index=index, timestamp=self._clock(), image=image)
            index += 1
            with self._cond:
                self._counts["read"] += 1
                if self._pending is not None:
                    self._counts["dropped"] += 1
                self._pending = frame
                self._cond.notify()
        if self._capture is not None:
            self._capture.release()

    def __iter__(self) -> Iterator[Frame]:
        due = 0.0  # monotonic time from which the next frame may be handed out (max_fps)
        while True:
            wait = due - time.monotonic() if self._min_interval else 0.0
            if wait > 0:
                # Paced (max_fps): wait in idle ticks, so a slow pace never starves the heartbeat.
                if self._stop.wait(min(wait, self._idle_tick)):
                    return
                if time.monotonic() < due:
                    yield Frame(index=-1, timestamp=self._clock(), image=None, idle=True)
                    continue
            with self._cond:
                deadline = time.monotonic() + self._idle_tick
                while self._pending is None and not self._stop.is_set() and time.monotonic() < deadline:
                    self._cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                if self._stop.is_set():
                    return
                frame, self._pending = self._pending, None
            if frame is None and self.stalled():
                continue  # no heartbeat while the device call hangs (see stall_after)
            if frame is not None and self._min_interval:
                # Keep the schedule while the consumer keeps up; after a slow frame, restart it
                # from now rather than catch up with a burst.
                now = time.monotonic()
                due = (due if now - due < self._min_interval else now) + self._min_interval
            yield (
                frame
                if frame is not None
                else Frame(index=-1, timestamp=self._clock(), image=None, idle=True)
            )

    def stalled(self) -> bool:
        """True while the grab thread has been inside one device call for over ``stall_after`` s."""
        since = self._in_call_since
        return since is not None and time.monotonic() - since > self._stall_after

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return dict(self._counts)


def parse_camera(spec: str) -> int | str | None:
    """``"0"`` -> 0, ``"/dev/video2"`` -> ``"/dev/video2"``, anything else -> None."""
    if spec.isdigit():
        return int(spec)
    if spec.startswith("/dev/video"):
        return spec
    return None


def open_camera(spec: int | str, *, width: int = 0, height: int = 0, **kwargs: Any) -> LatestFrameSource:
    """A V4L2 camera by index or device path, asking the driver for ``width`` x ``height``."""
    api = getattr(cv2, "CAP_V4L2", cv2.CAP_ANY)
    return LatestFrameSource(
        f"camera:{spec}", lambda: OpenCVCapture(spec, api=api, width=width, height=height), **kwargs
    )


def open_stream(url: str, *, label: str = "", **kwargs: Any) -> LatestFrameSource:
    """An RTSP/HTTP(S) stream through OpenCV's FFmpeg backend; ``label`` (the URL without its
    password) is what logs and errors show."""
    return LatestFrameSource(label or url, lambda: OpenCVCapture(url, label=label), **kwargs)
