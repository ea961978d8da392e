"""The model card: the JSON file beside a ``.tflite`` that says how to feed and read the model.

Kept separate from the classifier so tools (bench, config check, training's own checks) can read a
card without creating an interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config.validation import Section, SettingError, ValidationError, setting
from agent.errors import ModelError

EMOTION_CLASSES = 7
GENDER_CLASSES = 2


class _CardSection(Section, frozen=True):
    # Cards carry extra documentation (metrics, provenance); only the contract is checked.
    extra_keys = "ignore"


class CardInput(_CardSection, frozen=True):
    height: int = setting(gt=0)
    width: int = setting(gt=0)
    channels: int = 1
    range: tuple[float, float] = (0.0, 1.0)

    def check(self) -> None:
        if self.channels != 1:
            raise SettingError(f"must be 1 (grayscale), got {self.channels}", field="channels")


class CardLabels(_CardSection, frozen=True):
    emotion: tuple[str, ...]
    gender: tuple[str, ...]

    def check(self) -> None:
        for name, want in (("emotion", EMOTION_CLASSES), ("gender", GENDER_CLASSES)):
            got = len(getattr(self, name))
            if got != want:
                raise SettingError(f"expected {want} {name} labels, got {got}", field=name)


class CardCrop(_CardSection, frozen=True):
    margin: float = setting(default=0.2, ge=0.0, le=1.0)


class ModelCard(_CardSection, frozen=True):
    input: CardInput
    labels: CardLabels
    crop: CardCrop = setting(default_factory=CardCrop)
    metrics: dict[str, Any] = setting(default_factory=dict)


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
        return ModelCard.from_mapping(raw)
    except ValidationError as exc:
        where, msg = exc.errors[0]
        raise ModelError(f"model card {path}: {'.'.join(where) or '(root)'}: {msg}") from exc
