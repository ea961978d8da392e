"""The multi-task CNN: one shared convolutional backbone, an ``emotion`` head and a ``gender`` head.

Outputs are a DICT keyed by head name: a Keras model with list outputs converts to a TFLite model
whose outputs come in another order under generic names, while dict outputs keep their names in the
TFLite signature (the model contract reads them by name).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

# Widths and convolutions per resolution stage (48, 24, 12, 6 px at a 48 px input). ``vgg-s`` is the
# shipped backbone; ``vgg-xs`` is the small one (0.6x the parameters, 0.7x the training time per
# image), which the smoke config and the training-step benchmark use. Other backbones that were
# tried are recorded in docs/experiments.md.
BACKBONES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "vgg-s": ((32, 64, 128, 256), (2, 2, 2, 1)),
    "vgg-xs": ((24, 48, 96, 192), (2, 2, 2, 1)),
}
ARCHITECTURES = tuple(BACKBONES)


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint was built for; a run folder's ``spec.json`` must match it to resume."""

    architecture: str = "vgg-s"
    input_size: int = 48
    n_emotions: int = 7
    n_genders: int = 2
    dropout: float = 0.4
    weight_decay: float = 1e-4

    def as_dict(self) -> dict[str, object]:
        return {
            "architecture": self.architecture,
            "input_size": self.input_size,
            "n_emotions": self.n_emotions,
            "n_genders": self.n_genders,
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
        }


def _conv(x: keras.KerasTensor, filters: int, wd: float, policy: keras.DTypePolicy) -> keras.KerasTensor:
    reg = keras.regularizers.L2(wd) if wd else None
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, dtype=policy)(x)
    x = layers.BatchNormalization(dtype=policy)(x)
    return layers.ReLU(dtype=policy)(x)


def build_model(spec: ModelSpec, *, precision: str = "float32") -> keras.Model:
    """The network for ``spec``. Checkpoints load by the order of the layers' kinds, so that order
    (every stage's convolutions, a pool between stages, then the emotion head before the gender
    head) is part of every saved run and must not change.

    ``precision`` is the layers' dtype policy. Under a mixed policy the softmax heads still compute
    in float32, as a bfloat16 softmax loses the small probabilities the loss needs."""
    if spec.architecture not in BACKBONES:
        raise ValueError(f"unknown architecture {spec.architecture!r} (one of {', '.join(ARCHITECTURES)})")
    policy = keras.DTypePolicy(precision)
    widths, depths = BACKBONES[spec.architecture]
    wd = spec.weight_decay
    inputs = keras.Input((spec.input_size, spec.input_size, 1), name="image")
    x = inputs
    for stage, (filters, depth) in enumerate(zip(widths, depths, strict=True)):
        if stage:
            x = layers.MaxPooling2D(dtype=policy)(x)
        for _ in range(depth):
            x = _conv(x, filters, wd, policy)
    shared = layers.GlobalAveragePooling2D(dtype=policy)(x)

    e = layers.Dropout(spec.dropout, dtype=policy)(shared)
    e = layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.L2(wd), dtype=policy)(e)
    e = layers.Dropout(spec.dropout / 2, dtype=policy)(e)
    emotion = layers.Dense(spec.n_emotions, activation="softmax", name="emotion", dtype="float32")(e)

    g = layers.Dropout(spec.dropout, dtype=policy)(shared)
    g = layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.L2(wd), dtype=policy)(g)
    gender = layers.Dense(spec.n_genders, activation="softmax", name="gender", dtype="float32")(g)
    return keras.Model(inputs, {"emotion": emotion, "gender": gender}, name=f"facecast_{spec.architecture}")
