"""The multi-task CNN: one shared convolutional backbone, an ``emotion`` head and a ``gender`` head.

Outputs are a DICT keyed by head name: a Keras model with list outputs converts to a TFLite model
whose outputs come in another order under generic names, while dict outputs keep their names in the
TFLite signature (the model contract reads them by name).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

ARCHITECTURES = ("vgg-s", "vgg-xs", "sep-s")


@dataclass(frozen=True)
class ModelSpec:
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


def _conv(x: keras.KerasTensor, filters: int, wd: float, *, separable: bool = False) -> keras.KerasTensor:
    reg = keras.regularizers.L2(wd) if wd else None
    if separable:
        x = layers.SeparableConv2D(
            filters, 3, padding="same", use_bias=False, depthwise_regularizer=reg, pointwise_regularizer=reg
        )(x)
    else:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def build_model(spec: ModelSpec) -> keras.Model:
    """Build one of the candidate architectures (chosen by validation measurement, see MODEL_CARD)."""
    if spec.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {spec.architecture!r} (one of {', '.join(ARCHITECTURES)})")
    widths = {"vgg-s": (32, 64, 128, 256), "vgg-xs": (24, 48, 96, 192), "sep-s": (32, 64, 128, 256)}[
        spec.architecture
    ]
    separable = spec.architecture.startswith("sep")
    wd = spec.weight_decay
    inputs = keras.Input((spec.input_size, spec.input_size, 1), name="image")
    x = _conv(inputs, widths[0], wd)
    x = _conv(x, widths[0], wd, separable=separable)
    x = layers.MaxPooling2D()(x)
    for w in widths[1:3]:
        x = _conv(x, w, wd, separable=separable)
        x = _conv(x, w, wd, separable=separable)
        x = layers.MaxPooling2D()(x)
    x = _conv(x, widths[3], wd, separable=separable)
    shared = layers.GlobalAveragePooling2D()(x)

    e = layers.Dropout(spec.dropout)(shared)
    e = layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.L2(wd))(e)
    e = layers.Dropout(spec.dropout / 2)(e)
    emotion = layers.Dense(spec.n_emotions, activation="softmax", name="emotion")(e)

    g = layers.Dropout(spec.dropout)(shared)
    g = layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.L2(wd))(g)
    gender = layers.Dense(spec.n_genders, activation="softmax", name="gender")(g)
    return keras.Model(inputs, {"emotion": emotion, "gender": gender}, name=f"facecast_{spec.architecture}")
