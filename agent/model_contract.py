"""The model contract in one place: facecast's labels, the card beside a model file, and the checks a
loaded model must pass.

The exporter writes a card through :class:`ModelCard`; the agent, the evaluator and the single-pass
tool read it back through the same class, and all of them check an interpreter with
:func:`check_signature`. So what the training side promises and what the device relies on cannot
drift apart. This module never imports TensorFlow, and not even numpy at import time: Home Assistant
discovery and the minute summaries import it only for the label lists.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.validation import Section, SettingError, ValidationError, setting
from agent.errors import ModelError

# The output order of the ``emotion`` head (FER2013's class order) and of the ``gender`` head. Every
# list of these labels in facecast is one of these tuples, or a card's copy of them.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[str, str] = ("male", "female")
OUTPUTS: tuple[str, ...] = ("emotion", "gender")
CARD_SCHEMA = "facecast.model-card/1"


class _CardSection(Section, frozen=True):
    # A newer exporter may add documentation keys; an older agent must still load its card.
    extra_keys = "ignore"


class CardQuantization(_CardSection, frozen=True):
    scale: float
    zero_point: int


class CardInput(_CardSection, frozen=True):
    height: int = setting(gt=0)
    width: int = setting(gt=0)
    channels: int = 1
    range: tuple[float, float] = (0.0, 1.0)  # the float range the int8 input represents
    dtype: str = "int8"
    quantization: CardQuantization | None = None  # for readers; the agent takes it from the model

    def check(self) -> None:
        if self.channels != 1:
            raise SettingError(f"must be 1 (grayscale), got {self.channels}", field="channels")


class CardLabels(_CardSection, frozen=True):
    """Each head's labels in output order. Counted against the model's outputs; the names are what
    the events carry, so a card from facecast's exporter always lists ``EMOTIONS`` and ``GENDERS``."""

    emotion: tuple[str, ...]
    gender: tuple[str, ...]

    def check(self) -> None:
        for name, want in (("emotion", len(EMOTIONS)), ("gender", len(GENDERS))):
            got = len(getattr(self, name))
            if got != want:
                raise SettingError(f"expected {want} {name} labels, got {got}", field=name)


class CardCrop(_CardSection, frozen=True):
    margin: float = setting(default=0.2, ge=0.0, le=1.0)  # of the box side, added on each side
    square: bool = True
    relative_to: str = "detector box; margin is the fraction of the box side added on each side"


class CardFile(_CardSection, frozen=True):
    name: str
    bytes: int = setting(ge=0)


class ModelCard(_CardSection, frozen=True):
    """The card: how to feed and read the model (``input``, ``crop``, ``labels``, checked) and what
    it is and how well it does (the rest, documentation). Fields are in the order they are written."""

    schema: str = CARD_SCHEMA
    name: str = "facecast"
    version: str | None = None
    created: str | None = None
    architecture: dict[str, Any] = setting(default_factory=dict)
    parameters: int | None = None
    flip_tta: bool = False  # mirror averaging inside the graph
    zoom: float = 1.0  # the central fraction of the input the network reads, inside the graph
    file: CardFile | None = None
    input: CardInput
    preprocessing: dict[str, Any] = setting(default_factory=dict)
    crop: CardCrop = setting(default_factory=CardCrop)
    labels: CardLabels
    outputs: dict[str, Any] = setting(default_factory=dict)
    metrics: dict[str, Any] = setting(default_factory=dict)
    training: dict[str, Any] = setting(default_factory=dict)
    derived_from: dict[str, Any] | None = None  # a variant's source file and how it was derived

    def to_json(self) -> str:
        """The card file's text; a field left unset (None) is left out, as the exporter always did."""
        return json.dumps(_plain(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path | str = "model card") -> ModelCard:
        """Parse and validate card text; every failure is a one-line ``ModelError`` naming ``where``."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model card {where} is not valid JSON: {exc}") from exc
        try:
            return cls.from_mapping(raw)
        except ValidationError as exc:
            loc, msg = exc.errors[0]
            raise ModelError(f"model card {where}: {'.'.join(loc) or '(root)'}: {msg}") from exc


def _plain(section: Section) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        if value is None:
            continue
        if isinstance(value, Section):
            value = _plain(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def card_path_for(model_path: Path) -> Path:
    """The card sits beside the model with the same stem."""
    return model_path.with_suffix(".json")


def read_card(path: Path) -> ModelCard:
    """Read and validate a card file; every failure is a one-line ``ModelError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelError(f"model card not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from exc
    return ModelCard.from_json(text, path)


@dataclass(frozen=True)
class Signature:
    """A checked model's one signature: how to run it, quantize its input and read its outputs."""

    runner: Any
    input_name: str
    input_shape: tuple[int, ...]  # [1, H, W, 1]
    input_quantization: tuple[float, int]  # (scale, zero point)
    output_quantization: dict[str, tuple[float, int]]  # per output name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]


def _quantization(details: dict[str, Any]) -> tuple[float, int]:
    scale, zero = details.get("quantization", (0.0, 0))
    return float(scale), int(zero)


def check_signature(
    interpreter: Any,
    name: str,
    *,
    input_size: tuple[int, int] | None = None,
    labels: CardLabels | None = None,
) -> Signature:
    """Check a loaded interpreter against the contract: one signature, one int8 ``[1, H, W, 1]``
    input (of ``input_size`` when given), and exactly the outputs ``emotion`` and ``gender``, each with
    as many classes as ``labels`` (facecast's own labels by default). Outputs are read by name: TFLite
    reorders a model's outputs on conversion. Raises ``ModelError`` naming the model ``name``."""
    import numpy as np

    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ModelError(f"model {name}: expected exactly one signature, found {len(signatures)}")
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    inputs = runner.get_input_details()
    if len(inputs) != 1:
        raise ModelError(f"model {name}: expected one input, found {len(inputs)}")
    input_name, details = next(iter(inputs.items()))
    shape = tuple(int(d) for d in details["shape"])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 1:
        raise ModelError(f"model {name}: input shape {list(shape)} is not [1, H, W, 1]")
    if input_size is not None and shape[1:3] != tuple(input_size):
        want = [1, *input_size, 1]
        raise ModelError(f"model {name}: input shape {list(shape)} does not match the expected {want}")
    if np.dtype(details["dtype"]) != np.int8:
        raise ModelError(f"model {name}: input must be int8, got {np.dtype(details['dtype']).name}")
    outputs = runner.get_output_details()
    if set(outputs) != set(OUTPUTS):
        have = ", ".join(sorted(outputs)) or "none"
        raise ModelError(f"model {name}: outputs must be emotion and gender, found {have}")
    want_labels = labels or CardLabels(emotion=EMOTIONS, gender=GENDERS)
    for output in OUTPUTS:
        n = int(outputs[output]["shape"][-1])
        listed = len(getattr(want_labels, output))
        if n != listed:
            raise ModelError(f"model {name}: output {output} has {n} classes, the labels list {listed}")
    return Signature(
        runner=runner,
        input_name=input_name,
        input_shape=shape,
        input_quantization=_quantization(details),
        output_quantization={o: _quantization(outputs[o]) for o in OUTPUTS},
    )
