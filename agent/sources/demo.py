"""A synthetic clip with real faces, for ``facecast demo``: no camera, no download.

The portrait is ``astronaut.jpg`` beside this module: NASA's photograph of astronaut Eileen Collins
(NASA Great Images, https://flic.kr/p/r9qvLn; public domain, no known copyright restrictions), the
same 512x512 picture scikit-image ships as ``skimage.data.astronaut()``, re-encoded as a 65 KB JPEG
(quality 90). It lives in the package because scikit-image and scipy, needed for nothing else, were
about 175 MB of every device install. It is animated with a slow pan, zoom and slight rotation; in
the second half of the clip a mirrored, smaller copy joins it so the demo also shows multi-face frames.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import SourceError
from agent.sources.base import Frame

WIDTH, HEIGHT = 640, 360
PORTRAIT = Path(__file__).with_name("astronaut.jpg")


def astronaut_bgr() -> npt.NDArray[np.uint8]:
    """The portrait as BGR uint8 (512x512), decoded afresh so callers may draw on it."""
    try:
        data = np.frombuffer(PORTRAIT.read_bytes(), np.uint8)
    except OSError as exc:
        raise SourceError(f"the demo picture is missing from the facecast install: {PORTRAIT}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"the demo picture cannot be decoded: {PORTRAIT}")
    return np.ascontiguousarray(image, dtype=np.uint8)


def _place(
    canvas: npt.NDArray[np.uint8],
    img: npt.NDArray[np.uint8],
    cx: float,
    cy: float,
    *,
    scale: float,
    angle: float,
) -> None:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    m[0, 2] += cx - w / 2.0
    m[1, 2] += cy - h / 2.0
    cv2.warpAffine(img, m, (canvas.shape[1], canvas.shape[0]), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)


def render_frame(portrait: npt.NDArray[np.uint8], i: int, n: int) -> npt.NDArray[np.uint8]:
    """Frame ``i`` of ``n``: deterministic, so tests can rely on the same images."""
    t = i / max(1, n - 1)
    canvas = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    two = t >= 0.5
    scale = (0.55 if two else 0.75) + 0.12 * math.sin(2 * math.pi * t)
    cx = (190 if two else 320) + 60 * math.sin(2 * math.pi * t * 1.5)
    cy = 200 + 20 * math.cos(2 * math.pi * t)
    _place(canvas, portrait, cx, cy, scale=scale, angle=8.0 * math.sin(2 * math.pi * t * 2))
    if two:
        _place(
            canvas,
            portrait[:, ::-1],
            480 - 40 * math.sin(2 * math.pi * t),
            210,
            scale=0.5,
            angle=-6.0 * math.sin(2 * math.pi * t),
        )
    return canvas


class DemoSource:
    """``frames`` frames of the animated portrait, optionally paced at ``fps`` (0 = as fast as possible)."""

    live = False

    def __init__(self, frames: int = 300, fps: float = 0.0) -> None:
        self.name = "demo"
        self._portrait = astronaut_bgr()
        self._n = max(1, frames)
        self._fps = fps
        self._stop = threading.Event()
        self._read = 0

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        for i in range(self._n):
            if self._fps > 0:
                self._stop.wait(max(0.0, start + i / self._fps - time.monotonic()))
            if self._stop.is_set():
                return
            self._read += 1
            yield Frame(index=i, timestamp=time.time(), image=render_frame(self._portrait, i, self._n))

    def close(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, int]:
        return {"read": self._read}
