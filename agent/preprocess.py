"""The one definition of how a face image becomes model input.

Training, evaluation and the agent all call these functions, so a model never sees a face framed
or scaled differently from how it was trained (the model card records the same parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

U8Image = npt.NDArray[np.uint8]
F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class CropSpec:
    """How much context around a detector box the model expects.

    ``margin`` is the fraction of the box size added on EACH side: the crop is a square of side
    ``max(w, h) * (1 + 2 * margin)`` centred on the box, clamped to the frame.
    """

    margin: float = 0.2


def to_gray(image: npt.NDArray[np.uint8], *, bgr: bool = True) -> U8Image:
    """Grayscale with ITU-R 601 weights (OpenCV's), whatever the channel layout."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY
        if image.shape[2] == 4:
            code = cv2.COLOR_BGRA2GRAY if bgr else cv2.COLOR_RGBA2GRAY
        return np.asarray(cv2.cvtColor(image, code), dtype=np.uint8)
    raise ValueError(f"unsupported image shape {image.shape}")


def resize(gray: U8Image, height: int, width: int) -> U8Image:
    """Area interpolation: the right filter for the (usual) downscale, and stable on upscale."""
    if gray.shape[:2] == (height, width):
        return gray
    interp = cv2.INTER_AREA if gray.shape[0] >= height else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(gray, (width, height), interpolation=interp), dtype=np.uint8)


def scale_unit(gray: U8Image) -> F32Array:
    """uint8 [0, 255] -> float32 [0, 1], the float range the model card's input.range names."""
    return np.asarray(gray.astype(np.float32) / np.float32(255.0), dtype=np.float32)


def face_to_input(image: npt.NDArray[np.uint8], height: int, width: int, *, bgr: bool = True) -> F32Array:
    """A whole face image (already cropped) -> float32 HxW in [0, 1]."""
    return scale_unit(resize(to_gray(image, bgr=bgr), height, width))


def square_crop_box(
    box: tuple[float, float, float, float], margin: float, frame_w: int, frame_h: int
) -> tuple[int, int, int, int]:
    """Square crop around a detector box ``(x, y, w, h)``, grown by ``margin`` per side.

    Returns integer ``(x0, y0, x1, y1)`` clamped to the frame; clamping may make the crop
    non-square at frame edges, which the resize then absorbs (as training's crop augmentation did).
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = round(max(0.0, cx - side / 2.0))
    y0 = round(max(0.0, cy - side / 2.0))
    x1 = round(min(float(frame_w), cx + side / 2.0))
    y1 = round(min(float(frame_h), cy + side / 2.0))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def quantize(x: F32Array, scale: float, zero_point: int) -> npt.NDArray[np.int8]:
    """float -> int8 with the model's own input quantization parameters."""
    q = np.round(x / np.float32(scale)) + zero_point
    return np.asarray(np.clip(q, -128, 127), dtype=np.int8)


def dequantize(q: npt.NDArray[np.integer], scale: float, zero_point: int) -> F32Array:
    return np.asarray((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale), dtype=np.float32)
