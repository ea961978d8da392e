"""The detector interface: a frame in, face boxes in that frame's pixel coordinates out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Detection:
    """One face: ``(x, y, w, h)`` in pixels of the frame given to ``detect`` and a score in [0, 1]."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.w, self.h

    def scaled(self, factor: float) -> Detection:
        """The same box in a frame ``factor`` times larger (detection frame -> original frame)."""
        return Detection(self.x * factor, self.y * factor, self.w * factor, self.h * factor, self.score)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces. ``frame`` is BGR ``HxWx3`` or grayscale ``HxW`` uint8."""

    name: str

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Detection]: ...
