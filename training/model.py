"""The multi-task CNN: one shared convolutional backbone, an ``emotion`` head and a ``gender`` head.

Outputs are a DICT keyed by head name: a Keras model with list outputs converts to a TFLite model
whose outputs come in another order under generic names, while dict outputs keep their names in the
TFLite signature (the model contract reads them by name).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

ARCHITECTURES = ("vgg-s", "vgg-xs", "sep-s", "vgg-d")
AGE_SCALE = 100.0  # the age head regresses age / AGE_SCALE, so its target is about 0-1


@dataclass(frozen=True)
class ModelSpec:
    architecture: str = "vgg-s"
    input_size: int = 48
    n_emotions: int = 7
    n_genders: int = 2
    dropout: float = 0.4
    weight_decay: float = 1e-4
    # A training-only third head regressing age (UTKFace labels it): age and perceived gender share
    # cues (a child's face carries few of an adult's sex differences), so learning one shapes the
    # shared features for the other. ``contract_heads`` drops it before export.
    age_head: bool = False
    # Filters of a gender-only last stage (0: the heads share every convolution). Emotion wants
    # expression features and gender identity ones; at the last stage, where the heads' features
    # part most, a branch of its own lets gender stop competing with emotion for the same filters.
    gender_branch: int = 0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "architecture": self.architecture,
            "input_size": self.input_size,
            "n_emotions": self.n_emotions,
            "n_genders": self.n_genders,
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
        }
        if self.age_head:  # only when on, so run folders and cards of earlier models still match
            out["age_head"] = True
        if self.gender_branch:  # likewise
            out["gender_branch"] = self.gender_branch
        return out


def _conv(
    x: keras.KerasTensor, filters: int, wd: float, *, separable: bool = False, policy: keras.DTypePolicy
) -> keras.KerasTensor:
    reg = keras.regularizers.L2(wd) if wd else None
    if separable:
        x = layers.SeparableConv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            depthwise_regularizer=reg,
            pointwise_regularizer=reg,
            dtype=policy,
        )(x)
    else:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, dtype=policy)(x)
    x = layers.BatchNormalization(dtype=policy)(x)
    return layers.ReLU(dtype=policy)(x)


def _stage(
    x: keras.KerasTensor,
    filters: int,
    depth: int,
    wd: float,
    *,
    separable: bool,
    first: bool,
    policy: keras.DTypePolicy,
) -> keras.KerasTensor:
    """``depth`` convolutions at one resolution. The network's first convolution sees the raw image,
    so it stays a full convolution even in a separable net."""
    for i in range(depth):
        x = _conv(x, filters, wd, separable=separable and not (first and i == 0), policy=policy)
    return x


def build_model(spec: ModelSpec, *, precision: str = "float32") -> keras.Model:
    """Build one of the candidate architectures (chosen by validation measurement, see MODEL_CARD).

    ``precision`` is the layers' dtype policy. Under a mixed policy the softmax heads still compute
    in float32, as a bfloat16 softmax loses the small probabilities the loss needs."""
    policy = keras.DTypePolicy(precision)
    if spec.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {spec.architecture!r} (one of {', '.join(ARCHITECTURES)})")
    # Convolutions per resolution stage (48, 24, 12, 6 px at a 48 px input). ``vgg-d`` moves compute
    # from the 48 px stage, where a grayscale face has little to say, to the 12 and 6 px stages where
    # expressions are told apart: 3 convolutions there instead of 2 and 1, at fewer MACs in all
    # (40M against vgg-xs' 54M) and 0.5M parameters.
    widths, depths = {
        "vgg-s": ((32, 64, 128, 256), (2, 2, 2, 1)),
        "vgg-xs": ((24, 48, 96, 192), (2, 2, 2, 1)),
        "sep-s": ((32, 64, 128, 256), (2, 2, 2, 1)),
        "vgg-d": ((16, 32, 64, 128), (2, 2, 3, 3)),
    }[spec.architecture]
    separable = spec.architecture.startswith("sep")
    wd = spec.weight_decay
    inputs = keras.Input((spec.input_size, spec.input_size, 1), name="image")
    last = len(widths) - 1
    x = inputs
    for stage in range(last):
        x = _stage(x, widths[stage], depths[stage], wd, separable=separable, first=stage == 0, policy=policy)
        x = layers.MaxPooling2D(dtype=policy)(x)
    branch_in = x  # the 6 px map a gender branch starts from
    x = _stage(x, widths[last], depths[last], wd, separable=separable, first=False, policy=policy)
    shared = layers.GlobalAveragePooling2D(dtype=policy)(x)
    gender_features = shared
    if spec.gender_branch:
        b = _stage(
            branch_in, spec.gender_branch, depths[last], wd, separable=separable, first=False, policy=policy
        )
        gender_features = layers.GlobalAveragePooling2D(dtype=policy)(b)

    e = layers.Dropout(spec.dropout, dtype=policy)(shared)
    e = layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.L2(wd), dtype=policy)(e)
    e = layers.Dropout(spec.dropout / 2, dtype=policy)(e)
    emotion = layers.Dense(spec.n_emotions, activation="softmax", name="emotion", dtype="float32")(e)

    g = layers.Dropout(spec.dropout, dtype=policy)(gender_features)
    g = layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.L2(wd), dtype=policy)(g)
    gender = layers.Dense(spec.n_genders, activation="softmax", name="gender", dtype="float32")(g)
    outputs = {"emotion": emotion, "gender": gender}
    if spec.age_head:
        a = layers.Dropout(spec.dropout, dtype=policy)(shared)
        a = layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.L2(wd), dtype=policy)(a)
        outputs["age"] = layers.Dense(1, name="age", dtype="float32")(a)  # age / AGE_SCALE
    return keras.Model(inputs, outputs, name=f"facecast_{spec.architecture}")


def contract_heads(model: keras.Model) -> keras.Model:
    """The model with only the contract's outputs, ``emotion`` and ``gender`` (training-only heads
    such as ``age`` removed); the same layers and weights."""
    if set(model.output_names) == {"emotion", "gender"}:
        return model
    heads = {h: model.get_layer(h).output for h in ("emotion", "gender")}
    return keras.Model(model.inputs, heads, name=model.name)
