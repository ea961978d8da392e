"""OpenCV Haar cascade, for OpenCV 4.x installs that still ship it (OpenCV 5 removed it).

Slower and less accurate than BlazeFace; kept for systems whose distro OpenCV has cascades but no
TFLite runtime for the detector model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.detectors.base import Detection
from agent.errors import DetectorError

log = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def _default_cascade_path() -> Path | None:
    data = getattr(cv2, "data", None)
    folder = getattr(data, "haarcascades", "") if data is not None else ""
    if not folder:
        return None
    path = Path(folder) / DEFAULT_CASCADE
    return path if path.is_file() else None


class HaarDetector:
    """``cv2.CascadeClassifier`` on the grayscale frame; scores are a constant 1.0 (Haar has none)."""

    name = "haar"

    def __init__(
        self, cascade_path: Path | None = None, *, min_face_size: int = 40, scale_factor: float = 1.2
    ) -> None:
        factory = getattr(cv2, "CascadeClassifier", None)
        if factory is None:
            raise DetectorError(
                f"detector 'haar' needs cv2.CascadeClassifier, which OpenCV {cv2.__version__} does not have; "
                "use detector 'blazeface' or install opencv-python-headless<5"
            )
        path = cascade_path or _default_cascade_path()
        if path is None or not Path(path).is_file():
            raise DetectorError(
                f"Haar cascade file not found ({path or DEFAULT_CASCADE}); set detector.model_path"
            )
        self._cascade: Any = factory(str(path))
        if self._cascade.empty():
            raise DetectorError(f"cannot load Haar cascade {path}")
        self._min = max(1, int(min_face_size))
        self._scale = scale_factor

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Detection]:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=self._scale, minNeighbors=5, minSize=(self._min, self._min)
        )
        return [
            Detection(float(x), float(y), float(w), float(h), 1.0)
            for x, y, w, h in np.asarray(found).reshape(-1, 4)
        ]
