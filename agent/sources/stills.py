"""Decoding a still image no larger than the pipeline will use, within a fixed memory budget.

A full-size decode of a large photo holds OpenCV's decoder output plus its BGR copy, then the
pipeline's grayscale (an 8000x8000 photo: docs/performance.md), although the pipeline keeps no more
than ~1.5x ``source.max_width`` of it. A baseline JPEG is therefore decoded reduced inside libjpeg
(``IMREAD_REDUCED_COLOR_2/4/8``: a 1/8-scale decode never holds the full image). Other formats
(PNG, WebP, TIFF, ...) and progressive JPEGs hold the whole image while decoding whatever the
output scale, so their size is read from the header first and a file beyond the budget is refused
with a message naming it instead of taking the device's memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import SourceError
from agent.sources.image_header import ImageHeader, read_header

log = logging.getLogger(__name__)

MAX_DECODE_PIXELS = 50_000_000
"""Pixels a decoder may hold at once (about 3 bytes each): ~150 MB on top of the agent's ~110,
which keeps a run under 300 MB. 8000x6000 fits; 8000x8000 fits only as a baseline JPEG."""

DETAIL = 1.5
"""Decode at least this many times ``max_width`` wide: the luma the pipeline keeps for the
classifier's crops is that wide too (``agent.pipeline.luma_reduction``), so a reduced decode
loses no pixel the pipeline would have used."""

REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class Still:
    """``full_size`` is ``(height, width)`` of the image as stored (after EXIF rotation) when
    ``image`` was decoded smaller; None when ``image`` is full size."""

    image: npt.NDArray[np.uint8]
    full_size: tuple[int, int] | None


def reduction(width: int, max_width: int) -> int:
    """1, 2, 4 or 8: the largest scale-down that keeps ``width`` at least ``DETAIL * max_width``."""
    if max_width <= 0:
        return 1
    fits = int(width // (DETAIL * max_width))
    return next((r for r in (8, 4, 2) if fits >= r), 1)


def held_pixels(header: ImageHeader, scale: int) -> int:
    """Pixels the decoder holds to produce a 1/``scale`` image: only the output's for a baseline JPEG
    (libjpeg scales in its inverse DCT), the whole image's for anything else."""
    if header.format == "jpeg" and not header.progressive:
        return -(-header.width // scale) * -(-header.height // scale)
    return header.pixels


def decode_still(path: Path, *, max_width: int, max_pixels: int = MAX_DECODE_PIXELS) -> Still:
    """The image as BGR, reduced 1/2, 1/4 or 1/8 when ``max_width`` allows. Raises ``SourceError``
    (one line naming the file) when it is not an image OpenCV can decode, or too large to decode
    within ``max_pixels``."""
    header = read_header(path)
    scale = 1
    if header is not None:
        # The smaller side: EXIF may turn the image, and the width that counts is the one displayed.
        scale = reduction(min(header.width, header.height), max_width)
        held = held_pixels(header, scale)
        if held > max_pixels:
            hint = "; source.max_width 0 decodes at full size" if max_width <= 0 else ""
            kind = f"{'progressive ' if header.progressive else ''}{header.format.upper()}"
            raise SourceError(
                f"{path}: {header.width}x{header.height} {kind} is too large to decode "
                f"({held / 1e6:.0f} megapixels at once, the limit is {max_pixels / 1e6:.0f}){hint}"
            )
    try:
        image = cv2.imread(str(path), REDUCED_FLAGS[scale])
    except cv2.error as exc:
        log.debug("decode error in %s: %s", path, exc)
        image = None
    if image is None:
        raise SourceError(f"{path}: not an image OpenCV can decode")
    full_size = None
    if header is not None:
        height, width = header.height, header.width
        if (image.shape[0] > image.shape[1]) != (height > width):
            height, width = width, height  # EXIF orientation turned it
        if (height, width) != image.shape[:2]:
            full_size = height, width
    return Still(np.asarray(image, dtype=np.uint8), full_size)
