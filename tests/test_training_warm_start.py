"""``init_from``: training starts from the weights of an exported int8 model (the shipped one here),
read back out of the TFLite file, on real FER2013 images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.training_support import REPO, require_datasets, run_train_cli

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")

from training.datasets import load_fer2013_folder  # noqa: E402
from training.errors import CheckpointMismatchError  # noqa: E402
from training.model import ModelSpec, build_model  # noqa: E402
from training.warm_start import load_exported  # noqa: E402

pytestmark = pytest.mark.training

SHIPPED = REPO / "models" / "facecast_int8.tflite"
SMOKE = REPO / "training" / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def fer_test() -> tuple[np.ndarray, np.ndarray]:
    samples = load_fer2013_folder(require_datasets() / "fer2013", "test", size=48, limit_per_class=40)
    return (samples.images.astype(np.float32) / 255.0)[..., None], samples.emotion


def _tflite_emotions(images: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_path=str(SHIPPED))
    runner = interpreter.get_signature_runner()
    ((name, detail),) = runner.get_input_details().items()
    scale, zero = detail["quantization"]
    out = []
    for image in images:
        q = np.clip(np.round(image / scale + zero), -128, 127).astype(np.int8)[None]
        result = runner(**{name: q})
        out.append(int(np.argmax(result["emotion"])))
    return np.array(out)


def test_the_shipped_model_loads_and_reads_as_the_file_does(fer_test: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = fer_test
    model = build_model(ModelSpec(architecture="vgg-s"))
    untrained = np.argmax(model.predict(images, verbose=0)["emotion"], axis=1)
    load_exported(model, SHIPPED, images[::2])
    keras_emotions = np.argmax(model.predict(images, verbose=0)["emotion"], axis=1)
    # The file reads a central zoom and averages the mirror image, which the bare network does not;
    # the two still agree on most faces, and read them far better than random weights.
    agreement = float(np.mean(keras_emotions == _tflite_emotions(images)))
    assert agreement >= 0.8, agreement
    accuracy = float(np.mean(keras_emotions == labels))
    assert accuracy >= 0.5, accuracy
    assert accuracy > float(np.mean(untrained == labels)) + 0.2

    # Training mode normalises by the batch's statistics: the loaded normalisation must already sit on
    # them, or the first training step would start from a different network.
    pool = next(ly for ly in model.layers if isinstance(ly, tf.keras.layers.GlobalAveragePooling2D))
    backbone = tf.keras.Model(model.inputs, pool.output)  # the shared feature vector
    inference = backbone(images, training=False).numpy()
    training = backbone(images, training=True).numpy()
    relative = np.abs(training - inference).mean() / np.abs(inference).mean()
    assert relative < 0.1, relative


def test_another_architecture_is_refused_in_one_line(fer_test: tuple[np.ndarray, np.ndarray]) -> None:
    model = build_model(ModelSpec(architecture="vgg-xs"))
    with pytest.raises(CheckpointMismatchError, match="another architecture") as err:
        load_exported(model, SHIPPED, fer_test[0][:8])
    assert "\n" not in str(err.value)


def test_cli_names_an_init_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tflite"
    bogus.write_text("not a model\n")
    out = run_train_cli(
        "train",
        "--config",
        str(SMOKE),
        "--set",
        f"output_dir={tmp_path / 'run'}",
        "--set",
        f"init_from={bogus}",
        "--set",
        "data.limit_per_class=5",
        "--set",
        "data.gender_limit=20",
    )
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("facecast-train: error: init_from:") and str(bogus) in last, last
    assert "Traceback" not in out.stderr
