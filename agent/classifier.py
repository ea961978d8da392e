"""Emotion + gender for every face of a frame with the one int8 TFLite model.

The model contract (``agent.model_contract``, checked at start-up, so a wrong file fails before the
camera opens): one signature, one int8 NHWC ``[1, H, W, 1]`` input, outputs named ``emotion`` (7) and
``gender`` (2) that are probabilities after dequantization, read by name.

All faces of a frame go through one invoke when the runtime accepts a batch dimension (probed at
load). Measured, it was never slower than a loop of single invokes (docs/performance.md), so
batching is the default; ``batch=False`` forces the loop.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent import preprocess
from agent.errors import ModelError
from agent.model_contract import OUTPUTS, ModelCard, card_path_for, check_signature, read_card
from agent.runtime import load_interpreter

log = logging.getLogger(__name__)

MODEL_FILENAME = "facecast_int8.tflite"


def single_pass_path(model_path: Path) -> Path:
    """Where the single-pass variant of a mirror-averaged model lives: beside it, ``<stem>_single``.
    The same network without mirror averaging: half the per-face time, about a point less accuracy."""
    return model_path.with_name(f"{model_path.stem}_single{model_path.suffix}")


SINGLE_PASS_FILENAME = single_pass_path(Path(MODEL_FILENAME)).name

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceAttributes:
    """What the model says about one face."""

    emotion: str
    emotion_score: float
    emotion_probs: dict[str, float]
    gender: str
    gender_score: float


def default_model_path(*, single_pass: bool = False) -> Path:
    """Installed ``facecast_models`` package first, then the repository's ``models/`` folder.

    ``single_pass=True`` picks the shipped single-pass variant (no mirror averaging)."""
    filename = SINGLE_PASS_FILENAME if single_pass else MODEL_FILENAME
    # The package's folder from its import spec, not importlib.resources: that (with the zipfile
    # module it imports) would stay resident in the agent for one path lookup (~1.5 MB).
    spec = importlib.util.find_spec("facecast_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    return Path(__file__).resolve().parents[1] / "models" / filename


class FaceClassifier:
    """Wraps a validated interpreter; create it with :func:`load_classifier`."""

    def __init__(self, interpreter: Any, card: ModelCard, model_path: Path, *, batch: bool = True) -> None:
        self.card = card
        self.model_path = model_path
        self._interpreter = interpreter
        signature = check_signature(
            interpreter, model_path.name, input_size=(card.input.height, card.input.width), labels=card.labels
        )
        self._runner, self._input_name = signature.runner, signature.input_name
        self._in_scale, self._in_zero = signature.input_quantization
        self._out_quant = signature.output_quantization
        lo, hi = card.input.range
        # uint8 pixel -> model float range -> int8, folded into one lookup table per pixel value.
        floats = np.float32(lo) + (np.arange(256, dtype=np.float32) / np.float32(255.0)) * np.float32(hi - lo)
        self._lut = preprocess.quantize(floats, self._in_scale, self._in_zero)
        self.batch = batch and self._probe_batch()

    @property
    def input_size(self) -> tuple[int, int]:
        return self.card.input.height, self.card.input.width

    @property
    def crop_margin(self) -> float:
        return self.card.crop.margin

    def _probe_batch(self) -> bool:
        """Whether the runtime accepts a batch > 1 (fixed-batch models may refuse to resize)."""
        h, w = self.input_size
        try:
            out = self._runner(**{self._input_name: np.zeros((2, h, w, 1), np.int8)})
            ok = all(out[n].shape[0] == 2 for n in OUTPUTS)
        except (ValueError, RuntimeError) as exc:
            log.debug("batched inference unavailable: %s", exc)
            ok = False
        self._runner(**{self._input_name: np.zeros((1, h, w, 1), np.int8)})
        return ok

    def prepare(self, frame: npt.NDArray[np.uint8], boxes: Sequence[Box]) -> npt.NDArray[np.int8]:
        """Crop each face (square, with the card's margin), grayscale, resize, quantize: [N,H,W,1]."""
        h, w = self.input_size
        fh, fw = frame.shape[:2]
        bgr = frame.ndim == 3
        batch = np.empty((len(boxes), h, w, 1), np.int8)
        for i, box in enumerate(boxes):
            x0, y0, x1, y1 = preprocess.square_crop_box(box, self.crop_margin, fw, fh)
            crop = preprocess.to_gray(np.ascontiguousarray(frame[y0:y1, x0:x1]), bgr=bgr)
            batch[i, :, :, 0] = self._lut[preprocess.resize(crop, h, w)]
        return batch

    def classify_batch(self, batch: npt.NDArray[np.int8]) -> list[FaceAttributes]:
        """Run prepared inputs; one invoke for all faces when the runtime allows it."""
        if len(batch) == 0:
            return []
        if self.batch or len(batch) == 1:
            probs = self._invoke(batch)
        else:
            parts = [self._invoke(batch[i : i + 1]) for i in range(len(batch))]
            probs = {n: np.concatenate([p[n] for p in parts]) for n in OUTPUTS}
        return [self._attributes(probs["emotion"][i], probs["gender"][i]) for i in range(len(batch))]

    def classify(self, frame: npt.NDArray[np.uint8], boxes: Sequence[Box]) -> list[FaceAttributes]:
        return self.classify_batch(self.prepare(frame, boxes))

    def _invoke(self, batch: npt.NDArray[np.int8]) -> dict[str, npt.NDArray[np.float32]]:
        out = self._runner(**{self._input_name: batch})
        return {n: preprocess.dequantize(out[n], *self._out_quant[n]) for n in OUTPUTS}

    def _attributes(self, emo: npt.NDArray[np.float32], gen: npt.NDArray[np.float32]) -> FaceAttributes:
        e, g = int(np.argmax(emo)), int(np.argmax(gen))
        labels = self.card.labels
        return FaceAttributes(
            emotion=labels.emotion[e],
            emotion_score=float(emo[e]),
            emotion_probs={name: round(float(p), 4) for name, p in zip(labels.emotion, emo, strict=True)},
            gender=labels.gender[g],
            gender_score=float(gen[g]),
        )


def load_classifier(
    model_path: Path | None = None, *, num_threads: int = 1, batch: bool = True, single_pass: bool = False
) -> FaceClassifier:
    """Load and validate model + card; raises ``ModelError`` with a one-line reason.

    Without ``model_path``, the shipped model: mirror-averaged, or its single-pass variant."""
    path = Path(model_path) if model_path is not None else default_model_path(single_pass=single_pass)
    if not path.is_file():
        hint = "" if model_path is not None else " (set model.path in the config or pass --model)"
        raise ModelError(f"model file not found: {path}{hint}")
    card = read_card(card_path_for(path))
    interpreter = load_interpreter(path, num_threads=num_threads)
    classifier = FaceClassifier(interpreter, card, path, batch=batch)
    log.info(
        "classifier %s: input %dx%d, batch=%s",
        path.name,
        card.input.width,
        card.input.height,
        classifier.batch,
    )
    return classifier
