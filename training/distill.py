"""Soft targets from a teacher model, computed once before training (offline distillation).

FER2013 has no gender labels and UTKFace no emotion labels, so each head of the multi-task network
only ever sees one dataset's faces. A teacher that already reads both (a previously shipped int8
model, say) fills in the missing head's target with its probabilities, and softens the present one
with what it learned about that face: the student then trains both heads on every face. The
teacher runs through LiteRT exactly as the agent would run it, on each training image's whole
frame preprocessed as the teacher's card says, so no TensorFlow graph of the teacher is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.config import DistillConfig
from training.datasets import EMOTIONS, GENDERS, Samples
from training.errors import TeacherError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherInfo:
    """What the student's card records about its teacher."""

    teacher: str  # file name
    sha256: str
    input_size: int
    blend: float
    pseudo_weight: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Teacher:
    """An int8 facecast model checked against the contract: labels in our order, one square input.

    ``flag-labels`` reads its model through the same checks; ``what`` names the file in errors."""

    def __init__(self, path: Path, what: str = "teacher model") -> None:
        if not path.is_file():
            raise TeacherError(f"{what} not found: {path}")
        card_path = path.with_suffix(".json")
        if card_path.is_file():
            try:
                card = json.loads(card_path.read_text())
            except json.JSONDecodeError:
                raise TeacherError(f"{what} card {card_path} is not valid JSON") from None
            labels = card.get("labels", {})
            if tuple(labels.get("emotion", ())) != EMOTIONS or tuple(labels.get("gender", ())) != GENDERS:
                raise TeacherError(
                    f"{what} {path.name}: its card's labels {labels} are not facecast's "
                    f"{list(EMOTIONS)} / {list(GENDERS)}"
                )
        from training.evaluate import TFLiteModel

        try:
            self.model = TFLiteModel(path)
        except (ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise TeacherError(f"{what} {path} is not a usable TFLite model: {first[:160]}") from None
        shape = [int(d) for d in self.model.input_detail["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 1:
            raise TeacherError(f"{what} {path.name}: input shape {shape} is not [1, S, S, 1]")
        outputs = {k: int(np.prod(v["shape"])) for k, v in self.model.output_details.items()}
        if outputs != {"emotion": len(EMOTIONS), "gender": len(GENDERS)}:
            raise TeacherError(f"{what} {path.name}: outputs {outputs} are not emotion (7) and gender (2)")
        self.path = path
        self.size = shape[1]

    def probabilities(self, samples: Samples) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Each sample's whole image at the teacher's input size, through the protocol's resize."""
        from training.data import to_input_size

        x = to_input_size(samples, self.size).images.astype(np.float32) / 255.0
        emotion, gender = self.model.predict(x)
        # int8 outputs dequantize to sums a step or two off 1: renormalise so targets are distributions.
        emotion = emotion / np.maximum(emotion.sum(axis=1, keepdims=True), 1e-6)
        gender = gender / np.maximum(gender.sum(axis=1, keepdims=True), 1e-6)
        return emotion.astype(np.float32), gender.astype(np.float32)

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def blend_targets(
    labels: npt.NDArray[np.int64],
    own: npt.NDArray[np.float32] | None,
    teacher: npt.NDArray[np.float32],
    blend: float,
) -> npt.NDArray[np.float32]:
    """A labelled row: ``(1 - blend) x`` its own target ``+ blend x`` the teacher's; others: the teacher's."""
    has = labels >= 0
    base = np.zeros_like(teacher)
    if own is not None:
        base = own.astype(np.float32)
    else:
        base[np.flatnonzero(has), labels[has]] = 1.0
    mixed = (1.0 - blend) * base + blend * teacher
    return np.where(has[:, None], mixed, teacher).astype(np.float32)


def _agreement(probs: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> str:
    has = labels >= 0
    return f"{100.0 * float((probs.argmax(1) == labels)[has].mean()):.1f}%" if has.any() else "- (no labels)"


def apply_teacher(parts: list[Samples], cfg: DistillConfig) -> TeacherInfo | None:
    """Fill in every training part's soft targets from the configured teacher (in place)."""
    if cfg.teacher is None:
        return None
    teacher = Teacher(cfg.teacher)
    for part in parts:
        if not len(part):
            continue
        emotion, gender = teacher.probabilities(part)
        part.emotion_soft = blend_targets(part.emotion, part.emotion_soft, emotion, cfg.blend)
        part.gender_soft = blend_targets(part.gender, part.gender_soft, gender, cfg.blend)
        log.info(
            "teacher %s on %s (%d images): agrees with the emotion label on %s, gender on %s",
            teacher.path.name,
            part.source,
            len(part),
            _agreement(emotion, part.emotion),
            _agreement(gender, part.gender),
        )
    return TeacherInfo(
        teacher=teacher.path.name,
        sha256=teacher.sha256(),
        input_size=teacher.size,
        blend=cfg.blend,
        pseudo_weight=cfg.pseudo_weight,
    )
