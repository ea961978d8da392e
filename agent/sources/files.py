"""Sources that replay stored media: a video file, a still image, or a folder of images. Every
frame is processed."""

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
from agent.sources.stills import Still, decode_still

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
        # FFmpeg opens some files it then cannot decode a frame of (a text file named .png was a
        # run of 0 frames and exit 0): decode the first frame now, so such a file fails at start.
        # grab() only decodes; the frame is converted to BGR when the iteration retrieves it.
        if not self._cap.grab():
            self._cap.release()
            raise SourceError(f"cannot decode {self.path}: neither an image nor a video OpenCV can read")
        self._stop = threading.Event()
        self._read = 0
        self._spare: npt.NDArray[np.uint8] | None = None
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while not self._stop.is_set():
                spare, self._spare = self._spare, None
                if index == 0:  # grabbed at open
                    ok, image = self._cap.retrieve() if spare is None else self._cap.retrieve(spare)
                else:
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


class ImageFileSource:
    """One still image, decoded at open (reduced to what ``max_width`` needs, see
    :mod:`agent.sources.stills`), so a file that is not an image fails before anything is published."""

    live = False

    def __init__(self, path: Path, *, max_width: int = 640) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        start = time.perf_counter()
        self._still: Still | None = decode_still(self.path, max_width=max_width)
        self._decode_ms = (time.perf_counter() - start) * 1000.0
        self._read = 0

    def __iter__(self) -> Iterator[Frame]:
        still, self._still = self._still, None
        if still is None:
            return
        self._read = 1
        frame = Frame(
            index=0,
            timestamp=time.time(),
            image=still.image,
            file=self.path.name,
            new_scene=True,
            full_size=still.full_size,
            decode_ms=self._decode_ms,  # decoded at open: pulling the frame costs nothing
        )
        del still  # the consumer decides how long the pixels live
        yield frame

    def close(self) -> None:
        self._still = None

    def stats(self) -> dict[str, int]:
        return {"read": self._read}


class ImageFolderSource:
    """Every image file in a folder, sorted by name; unreadable files are logged, skipped, counted.

    Each image is its own scene (``Frame.new_scene``) unless ``image_sequence``: a folder of
    photos is not a film, and tracking across it joined different people who stood at the same
    place into one track whose smoothed labels mixed them (on 1,232 labelled faces, 56% of the raw
    labels were right and 38% of the smoothed ones). ``image_sequence`` is for frames of one scene
    saved as files (``ffmpeg -i clip.mp4 frames/%05d.png``), which the tracker may follow."""

    live = False

    def __init__(self, folder: Path, *, max_width: int = 640, image_sequence: bool = False) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        if not self.folder.is_dir():
            raise SourceError(f"not a folder: {self.folder}")
        self.files = sorted(
            p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise SourceError(f"no image files in {self.folder}")
        self.max_width = max_width
        self.image_sequence = image_sequence
        self._stop = threading.Event()
        self._read = 0
        self._skipped = 0

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            if self._stop.is_set():
                return
            try:
                still = decode_still(path, max_width=self.max_width)
            except SourceError as exc:
                self._skipped += 1
                log.warning("skipping image %s (%d skipped so far)", exc, self._skipped)
                continue
            self._read += 1
            frame = Frame(
                index=index,
                timestamp=time.time(),
                image=still.image,
                file=path.name,
                new_scene=not self.image_sequence,
                full_size=still.full_size,
            )
            del still  # as for video: a 12-megapixel photo is 36 MB; the consumer decides how long it lives
            yield frame

    def close(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, int]:
        return {"read": self._read, "skipped": self._skipped}
