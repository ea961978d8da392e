"""The model card: the JSON file beside a ``.tflite`` that says how to feed and read the model.

Kept separate from the classifier so tools (bench, config check, training's own checks) can read a
card without creating an interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from agent.errors import ModelError

EMOTION_CLASSES = 7
GENDER_CLASSES = 2


class _CardSection(BaseModel):
    # Cards carry extra documentation (metrics, provenance); only the contract is checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CardInput(_CardSection):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int = 1
    range: tuple[float, float] = (0.0, 1.0)

    @field_validator("channels")
    @classmethod
    def _one_channel(cls, v: int) -> int:
        if v != 1:
            raise ValueError(f"channels must be 1 (grayscale), got {v}")
        return v


class CardLabels(_CardSection):
    emotion: tuple[str, ...]
    gender: tuple[str, ...]

    @field_validator("emotion", "gender")
    @classmethod
    def _count(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        want = {"emotion": EMOTION_CLASSES, "gender": GENDER_CLASSES}[str(info.field_name)]
        if len(v) != want:
            raise ValueError(f"expected {want} {info.field_name} labels, got {len(v)}")
        return v


class CardCrop(_CardSection):
    margin: float = Field(default=0.2, ge=0.0, le=1.0)


class ModelCard(_CardSection):
    input: CardInput
    labels: CardLabels
    crop: CardCrop = CardCrop()
    metrics: dict[str, Any] = Field(default_factory=dict)


def card_path_for(model_path: Path) -> Path:
    """The card sits beside the model with the same stem."""
    return model_path.with_suffix(".json")


def read_card(path: Path) -> ModelCard:
    """Parse and validate a card; every failure is a one-line ``ModelError``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"model card not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from exc
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise ModelError(f"model card {path}: {where}: {err['msg']}") from exc
