"""Raspberry Pi camera through picamera2: the ``lores`` YUV420 stream's Y plane is free grayscale.

The ISP produces the small YUV stream in hardware, so the Pi's CPU never converts colour: the
detector and classifier both get the luma plane directly.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agent.errors import SourceError
from agent.sources.live import Image, LatestFrameSource

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the picamera2 source needs the picamera2 package (on Raspberry Pi OS: `apt install python3-picamera2`, "
    "and create the venv with --system-site-packages)"
)


class Picamera2Capture:
    """Starts the camera with a ``lores`` YUV420 stream and reads its Y plane."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        try:
            from picamera2 import Picamera2  # only on a Pi
        except ImportError as exc:  # includes "No module named 'libcamera'" off a Pi
            raise SourceError(INSTALL_HINT) from exc
        try:
            self._cam: Any = Picamera2()
            config = self._cam.create_video_configuration(
                main={"size": (width, height)}, lores={"size": (width, height), "format": "YUV420"}
            )
            self._cam.configure(config)
            self._cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(f"cannot start the Pi camera: {exc}") from exc
        self._height = height

    def read(self) -> Image | None:
        try:
            yuv = self._cam.capture_array("lores")
        except (RuntimeError, OSError) as exc:
            log.debug("picamera2 read failed: %s", exc)
            return None
        return np.ascontiguousarray(yuv[: self._height], dtype=np.uint8)

    def release(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except (RuntimeError, OSError) as exc:
            log.debug("picamera2 close: %s", exc)


def open_picamera2(width: int = 640, height: int = 480, **kwargs: Any) -> LatestFrameSource:
    return LatestFrameSource("picamera2", lambda: Picamera2Capture(width, height), **kwargs)
