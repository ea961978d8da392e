"""Raspberry Pi camera through picamera2: colour frames straight from the ISP.

The main stream is configured as ``RGB888`` (libcamera's name for bytes ordered B, G, R, which is
OpenCV's BGR), so the Pi's image signal processor scales and converts colour in hardware and the CPU
does neither. The luma plane of a ``lores`` YUV420 stream would be free grayscale, but the detector
needs colour: on the dataset clips BlazeFace found 49 of 311 faces on luma against 311 on colour
(facenet_pytorch_video) and 369 of 408 (short_hamilton_clip). The classifier reads luma from each
face crop, which costs microseconds.
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
STREAM = "main"
PIXEL_FORMAT = "RGB888"  # B, G, R bytes: OpenCV's channel order


class Picamera2Capture:
    """Starts the camera with one ``RGB888`` main stream of the requested size and reads it."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        try:
            from picamera2 import Picamera2  # only on a Pi
        except ImportError as exc:  # includes "No module named 'libcamera'" off a Pi
            raise SourceError(INSTALL_HINT) from exc
        try:
            self._cam: Any = Picamera2()
            main = {"size": (width, height), "format": PIXEL_FORMAT}
            config = self._cam.create_video_configuration(main=main)
            self._cam.configure(config)
            self._cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(f"cannot start the Pi camera: {exc}") from exc

    def read(self) -> Image | None:
        try:
            image = self._cam.capture_array(STREAM)
        except (RuntimeError, OSError) as exc:
            log.debug("picamera2 read failed: %s", exc)
            return None
        if image is None or image.ndim != 3 or image.shape[2] < 3:
            log.debug("picamera2 returned an unexpected array: %s", getattr(image, "shape", None))
            return None
        # picamera2 copies the frame out of the camera's buffer (and drops any row padding).
        return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)

    def release(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except (RuntimeError, OSError) as exc:
            log.debug("picamera2 close: %s", exc)


def open_picamera2(width: int = 640, height: int = 480, **kwargs: Any) -> LatestFrameSource:
    return LatestFrameSource("picamera2", lambda: Picamera2Capture(width, height), **kwargs)
