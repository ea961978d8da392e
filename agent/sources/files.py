"""Sources that replay stored media: a video file, or a folder of images. Every frame is processed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import SourceError
from agent.sources.base import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


class VideoFileSource:
    """Decodes a video file with OpenCV (FFmpeg backend), every frame, in order."""

    live = False

    def __init__(self, path: Path, *, decode_threads: int = 1) -> None:
        """``decode_threads`` 1 by default: the pipeline already decodes in its own thread, and each
        extra FFmpeg frame thread holds more full-size frames (~8 MB at 1080p)."""
        self.path = Path(path)
        self.name = str(self.path)
        params = [cv2.CAP_PROP_N_THREADS, decode_threads] if decode_threads > 0 else []
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video file {self.path}")
        self._stop = threading.Event()
        self._read = 0
        self._spare: npt.NDArray[np.uint8] | None = None
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while not self._stop.is_set():
                spare, self._spare = self._spare, None
                ok, image = self._cap.read() if spare is None else self._cap.read(spare)
                del spare
                if not ok:
                    break
                self._read += 1
                frame = Frame(
                    index=index,
                    timestamp=time.time(),
                    image=np.asarray(image, dtype=np.uint8),
                    recycle=self._give_back,
                )
                # Drop this generator's own reference while the frame is out: the consumer may
                # replace frame.image (a 1080p frame by its 0.5 MB luma) and hand the colour buffer
                # back; unless it does, the next read allocates a new one.
                del image
                yield frame
                index += 1
        finally:
            self._spare = None
            self._cap.release()

    def _give_back(self, image: npt.NDArray[np.uint8]) -> None:
        self._spare = image

    def close(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, int]:
        return {"read": self._read}


class ImageFolderSource:
    """Every image file in a folder, sorted by name; unreadable files are logged, skipped, counted."""

    live = False

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        if not self.folder.is_dir():
            raise SourceError(f"not a folder: {self.folder}")
        self.files = sorted(
            p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise SourceError(f"no image files in {self.folder}")
        self._stop = threading.Event()
        self._read = 0
        self._skipped = 0

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            if self._stop.is_set():
                return
            try:
                data = np.fromfile(path, dtype=np.uint8)
                image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            except (OSError, cv2.error) as exc:
                log.debug("decode error in %s: %s", path, exc)
                image = None
            if image is None:
                self._skipped += 1
                log.warning("skipping unreadable image %s (%d skipped so far)", path.name, self._skipped)
                continue
            self._read += 1
            frame = Frame(
                index=index, timestamp=time.time(), image=np.asarray(image, np.uint8), file=path.name
            )
            del image  # as for video: a 12-megapixel photo is 36 MB; the consumer decides how long it lives
            yield frame

    def close(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, int]:
        return {"read": self._read, "skipped": self._skipped}
