"""Start training from an exported int8 model instead of random weights.

Why: the float checkpoints of a shipped model live in its run folder on whichever workstation trained
it, while the int8 file ships with the project. Fine-tuning the shipped file on more data (ours, or a
user's own folder of faces) keeps what it already knows, emotion above all, for a fraction of a
from-scratch run's time.

The exported graph folds each batch normalisation into its convolution (``y = W'x + b'``) and
quantizes ``W'`` per output channel. The Keras network keeps its batch normalisation layers, which
normalise by the *batch's* statistics while training, so a folded kernel with an identity
normalisation would be rescaled at the first step. Instead each normalisation is given the mean and
variance of its convolution's output on real images, and a scale and shift that undo exactly that
normalisation: the network then computes ``W'x + b'`` in inference mode and approximately so in
training mode, and fine-tuning starts where the shipped model stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from agent.runtime import find_interpreter_class
from training.errors import CheckpointMismatchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Layer:
    """One convolution or dense layer of the exported graph, dequantized to float32."""

    kernel: npt.NDArray[np.float32]  # TFLite's layout: (out, kh, kw, in) or (out, in)
    bias: npt.NDArray[np.float32]


def _dequantize(interpreter: Any, detail: dict[str, Any]) -> npt.NDArray[np.float32]:
    raw = np.asarray(interpreter.get_tensor(detail["index"]), dtype=np.float32)
    q = detail["quantization_parameters"]
    scales, zeros = q["scales"].astype(np.float32), q["zero_points"].astype(np.float32)
    if scales.size == 0:  # a float tensor
        return raw
    shape = [1] * raw.ndim
    if scales.size > 1:
        shape[q["quantized_dimension"]] = scales.size
    return np.asarray((raw - zeros.reshape(shape)) * scales.reshape(shape), dtype=np.float32)


def read_layers(path: Path) -> dict[tuple[int, ...], _Layer]:
    """The exported graph's convolutions and dense layers, keyed by kernel shape (each shape occurs
    once in the backbones of ``training.model``; a mirrored graph runs the same tensors twice)."""
    if not path.is_file():
        raise CheckpointMismatchError(f"init_from: model file not found: {path}")
    try:
        interpreter = find_interpreter_class()(model_path=str(path))  # the agent's own runtime
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise CheckpointMismatchError(f"init_from: {path} is not a TFLite model: {first[:160]}") from None
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    layers: dict[tuple[int, ...], _Layer] = {}
    for op in interpreter._get_ops_details():  # the only API listing an op's inputs
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        weights, bias = int(op["inputs"][1]), int(op["inputs"][2])
        kernel = _dequantize(interpreter, details[weights])
        if kernel.shape in layers:
            continue
        bias_values = _dequantize(interpreter, details[bias]) if bias >= 0 else np.zeros(kernel.shape[0])
        layers[kernel.shape] = _Layer(kernel, bias_values.astype(np.float32))
    return layers


def _matching(layers: dict[tuple[int, ...], _Layer], shape: tuple[int, ...], what: str, path: Path) -> _Layer:
    if shape not in layers:
        raise CheckpointMismatchError(
            f"init_from: {path} has no {what} of kernel shape {shape}; it was exported from another"
            " architecture than the config's"
        )
    return layers[shape]


def load_exported(model: keras.Model, path: Path, images: npt.NDArray[np.float32]) -> None:
    """Give ``model`` the weights of the exported int8 file ``path``; ``images`` (N, H, W, 1) in
    [0, 1] are the real inputs whose convolution statistics the normalisation layers take."""
    layers = read_layers(path)
    convs = [ly for ly in model.layers if isinstance(ly, keras.layers.Conv2D)]
    norms = [ly for ly in model.layers if isinstance(ly, keras.layers.BatchNormalization)]
    denses = [ly for ly in model.layers if isinstance(ly, keras.layers.Dense)]
    if len(convs) != len(norms):
        raise CheckpointMismatchError("init_from: every convolution needs its own normalisation layer")
    biases = []
    for conv, norm in zip(convs, norms, strict=True):
        keras_shape = tuple(conv.kernel.shape)  # (kh, kw, in, out)
        src = _matching(layers, (keras_shape[3], *keras_shape[:3]), "convolution", path)
        conv.kernel.assign(np.transpose(src.kernel, (1, 2, 3, 0)))
        eps = norm.epsilon
        norm.set_weights(
            [np.ones_like(src.bias), src.bias, np.zeros_like(src.bias), np.full_like(src.bias, 1.0 - eps)]
        )
        biases.append(src.bias)
    for dense in denses:
        keras_shape = tuple(dense.kernel.shape)  # (in, out)
        src = _matching(layers, (keras_shape[1], keras_shape[0]), "dense layer", path)
        dense.set_weights([src.kernel.T, src.bias])
    # The network now computes the exported graph in inference mode; read each convolution's output
    # on real images and move the normalisation onto those statistics without changing its output.
    probe = keras.Model(model.inputs, [conv.output for conv in convs])
    outputs = probe.predict(images, batch_size=256, verbose=0)
    for norm, out, bias in zip(norms, outputs, biases, strict=True):
        z = np.asarray(out, dtype=np.float64).reshape(-1, out.shape[-1])
        mean, var = z.mean(axis=0), z.var(axis=0)
        gamma = np.sqrt(var + norm.epsilon)
        norm.set_weights([gamma, mean + bias, mean, var])
    log.info("init_from %s: %d convolutions and %d dense layers loaded", path, len(convs), len(denses))
