"""Supersampled crops and distillation from a teacher model, on real images and the shipped model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.training_support import REPO, require_datasets, run_train_cli

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")

from training.augment import make_augmenter  # noqa: E402
from training.config import AugmentConfig, ConfigError, DistillConfig, FramingConfig, load_config  # noqa: E402
from training.data import TrainingData  # noqa: E402
from training.datasets import concat, load_fer2013_folder, load_utkface, to_canvas  # noqa: E402
from training.distill import Teacher, apply_teacher, blend_targets  # noqa: E402
from training.errors import TeacherError  # noqa: E402
from training.train import epoch_samples, train_dataset  # noqa: E402

SHIPPED = REPO / "models" / "facecast_int8.tflite"
STILL = AugmentConfig(flip=False, rotation_deg=0.0, brightness=0.0, contrast=0.0)


@pytest.fixture(scope="module")
def root() -> Path:
    return require_datasets()


def _area(images: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def test_integer_canvas_replicates_pixels_and_other_sizes_resample() -> None:
    im = np.arange(16, dtype=np.uint8).reshape(4, 4)
    big = to_canvas(im, 8)
    assert (big[::2, ::2] == im).all() and (big[1::2, 1::2] == im).all()
    assert to_canvas(im, 6).shape == (6, 6)  # not a whole multiple: an ordinary resize
    assert to_canvas(big, 4).tolist() == im.tolist()  # shrinking by 2: the area filter undoes it


def test_supersampled_crop_at_scale_one_is_what_the_protocol_feeds(root: Path) -> None:
    fer = load_fer2013_folder(root / "fer2013", "train", limit_per_class=2)
    utk = load_utkface(root / "utkface", "val", limit=8)
    # A range reaching past 1 (reflect padding) must not move a crop sampled at exactly 1.
    reach = FramingConfig(canvas=96, supersample=2, tight_scale=(1, 1), loose_scale=(1, 1.12), shift=0.0)
    aug = make_augmenter(reach, STILL, 48)
    both = concat([fer, utk], size=96)
    tags = np.array([0] * len(fer) + [0] * len(utk))  # tag 0: scale exactly 1 for every image
    out = aug(tf.constant(both.images[..., None]), tf.constant(tags)).numpy()[..., 0]
    assert out.shape == (len(both), 48, 48)
    # FER2013's 48 px original, pixel for pixel; UTKFace's 96 -> 48 area average (OpenCV rounds to uint8)
    np.testing.assert_array_equal(np.round(out[: len(fer)] * 255), fer.images)
    np.testing.assert_allclose(out[len(fer) :], _area(utk.images, 48) / 255.0, atol=0.51 / 255)
    # Without supersampling, a 64 px canvas crop resamples bilinearly and is visibly softer.
    plain = make_augmenter(FramingConfig(tight_scale=(1, 1), loose_scale=(1, 1), shift=0.0), STILL, 48)
    soft = plain(tf.constant(concat([fer], size=64).images[..., None]), tf.constant(tags[: len(fer)])).numpy()
    assert np.abs(soft[..., 0] * 255 - fer.images).mean() > 2.0


def test_supersample_needs_a_canvas_that_holds_the_crop() -> None:
    with pytest.raises(ConfigError, match=r"framing.canvas: must be at least supersample x input_size = 96"):
        load_config(None, {"framing.supersample": 2})
    assert load_config(None, {"framing.supersample": 2, "framing.canvas": 96}).framing.supersample == 2


def test_blended_targets_keep_labels_and_fill_missing_heads() -> None:
    teacher = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]], np.float32)
    labels = np.array([0, -1, 1])
    out = blend_targets(labels, None, teacher, 0.4)
    np.testing.assert_allclose(out, [[0.68, 0.32], [0.9, 0.1], [0.24, 0.76]], atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)


def test_teacher_fills_both_heads_on_real_images(root: Path) -> None:
    fer = load_fer2013_folder(root / "fer2013", "train", limit_per_class=6)
    utk = load_utkface(root / "utkface", "train", limit=60)
    fer_soft = np.eye(7, dtype=np.float32)[fer.emotion]
    fer.emotion_soft = fer_soft.copy()
    info = apply_teacher([fer, utk], DistillConfig(teacher=SHIPPED, blend=0.4, pseudo_weight=0.3))
    assert info is not None and info.teacher == SHIPPED.name and info.input_size == 48
    assert len(info.sha256) == 64
    assert fer.gender_soft is not None and utk.emotion_soft is not None and utk.gender_soft is not None
    # Missing heads now carry the teacher's distributions ...
    np.testing.assert_allclose(fer.gender_soft.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(utk.emotion_soft.sum(1), 1.0, atol=1e-5)
    # ... labelled heads keep the label on top (0.6 of the weight) with the teacher's reading mixed in.
    assert (fer.emotion_soft.argmax(1) == fer.emotion).all()
    assert (fer.emotion_soft.max(1) >= 0.6 - 1e-6).all() and (fer.emotion_soft.max(1) < 1.0).any()
    assert (utk.gender_soft.argmax(1) == utk.gender).all()
    # The teacher reads these faces, it does not echo the label: most agree, not all are certain.
    assert (utk.gender_soft[:, 1] > 0.5).mean() == pytest.approx((utk.gender == 1).mean(), abs=0.2)

    train = concat([fer, utk], size=64)
    framing = np.zeros(len(train), np.int64)
    data = TrainingData(train, framing, train, np.ones(7, np.float32), {}, teacher=info, pseudo_weight=0.3)
    from training.config import TrainConfig

    cfg = TrainConfig(batch_size=len(train), gender_only_fraction=0.5)
    # UTKFace stays "gender-only" for the draw, though it now has an emotion target too.
    assert epoch_samples(data, cfg) == len(fer) + round(len(utk) * 0.5)
    _, _, weights = next(iter(train_dataset(data, TrainConfig(batch_size=len(train)))))
    w_e, w_g = weights["emotion"].numpy(), weights["gender"].numpy()
    assert np.isclose(w_e, 0.3).sum() == len(utk)  # UTKFace's emotion: the teacher's, at 0.3
    assert np.isclose(w_g, 0.3).sum() == len(fer)  # FER2013's gender: the teacher's, at 0.3
    assert np.isclose(w_e, 1.0).sum() == len(fer) and np.isclose(w_g, 1.0).sum() == len(utk)  # the labels


def _bad_teachers(tmp: Path) -> list[tuple[Path, str]]:
    missing = tmp / "nope.tflite"
    garbage = tmp / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all" * 10)
    relabelled = tmp / "relabelled.tflite"
    shutil.copy2(SHIPPED, relabelled)
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    card["labels"]["gender"] = ["female", "male"]
    relabelled.with_suffix(".json").write_text(json.dumps(card))
    return [
        (missing, "teacher model not found"),
        (garbage, "is not a usable TFLite model"),
        (relabelled, "labels"),
    ]


def test_a_bad_teacher_is_a_clear_error(tmp_path: Path) -> None:
    for path, match in _bad_teachers(tmp_path):
        with pytest.raises(TeacherError, match=match):
            Teacher(path)


def test_cli_bad_teacher_is_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    proc = run_train_cli(
        "train",
        "--config",
        str(REPO / "training" / "configs" / "smoke.yaml"),
        "--set",
        f"output_dir={tmp_path / 'run'}",
        "--set",
        f"distill.teacher={garbage}",
        timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("facecast-train: error: teacher") and "Traceback" not in proc.stderr
