"""Fit the multi-task model: masked per-head losses, a time-aware cosine schedule, resumable.

Import this module only after ``training.tfenv.configure`` has set TensorFlow's environment.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.augment import make_augmenter
from training.config import TrainConfig
from training.data import TrainingData
from training.datasets import GENDERS, soft_or_onehot
from training.errors import CheckpointMismatchError
from training.model import AGE_SCALE, ModelSpec, build_model
from training.tfenv import resolve_precision

log = logging.getLogger(__name__)

BEST_WEIGHTS = "best.weights.h5"
SPEC_FILE = "spec.json"


def spec_from_config(cfg: TrainConfig) -> ModelSpec:
    return ModelSpec(
        architecture=cfg.architecture,
        input_size=cfg.input_size,
        dropout=cfg.dropout,
        weight_decay=cfg.weight_decay,
        age_head=cfg.age_loss_weight > 0,
        gender_branch=cfg.gender_branch,
    )


def masks(
    data_emotion: np.ndarray,
    data_gender: np.ndarray,
    class_w: np.ndarray,
    *,
    soft_emotion: np.ndarray | None = None,
    soft_gender: np.ndarray | None = None,
    pseudo_weight: float = 0.0,
) -> tuple[Any, Any]:
    """Per-sample loss weights: a missing label (-1) gets weight 0, so that head learns nothing from it.

    Unless a teacher gave that head a target (a soft row that sums to 1): it then weighs
    ``pseudo_weight``, below a label's, since it is only the teacher's reading of the face."""
    has_e = data_emotion >= 0
    has_g = data_gender >= 0
    w_e = np.where(has_e, class_w[np.clip(data_emotion, 0, None)], 0.0).astype(np.float32)
    w_g = has_g.astype(np.float32)
    if pseudo_weight > 0.0:
        for w, has, soft in ((w_e, has_e, soft_emotion), (w_g, has_g, soft_gender)):
            if soft is not None:
                w[~has & (soft.sum(axis=1) > 0.5)] = pseudo_weight
    return w_e, w_g


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """The configured optimizer; its learning rate is then driven by the schedule callback."""
    ema = {"use_ema": cfg.ema_momentum is not None, "ema_momentum": cfg.ema_momentum or 0.99}
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum, nesterov=True, **ema)
    return keras.optimizers.Adam(cfg.learning_rate, **ema)


def compile_model(model: keras.Model, cfg: TrainConfig) -> None:
    loss: dict[str, keras.losses.Loss] = {
        "emotion": keras.losses.CategoricalCrossentropy(),
        "gender": keras.losses.CategoricalCrossentropy(label_smoothing=cfg.gender_label_smoothing),
    }
    weights = {"emotion": 1.0, "gender": cfg.gender_loss_weight}
    if "age" in model.output_names:
        loss["age"] = keras.losses.Huber(delta=0.1)  # quadratic within 10 years, linear beyond
        weights["age"] = cfg.age_loss_weight
    model.compile(
        optimizer=make_optimizer(cfg),
        loss=loss,
        loss_weights=weights,
        weighted_metrics={
            "emotion": [keras.metrics.CategoricalAccuracy(name="acc")],
            "gender": [keras.metrics.CategoricalAccuracy(name="acc")],
        },
    )


def train_dataset(data: TrainingData, cfg: TrainConfig) -> tf.data.Dataset:
    """Augmented batches of ``(image, soft targets, loss weights)``; both heads' targets are soft
    (a label's one-hot, blended with FER+ votes or a teacher's probabilities where configured)."""
    t = data.train
    assert t.emotion_soft is not None
    soft_g = soft_or_onehot(t.gender_soft, t.gender, len(GENDERS))
    w_e, w_g = masks(
        t.emotion,
        t.gender,
        data.emotion_class_weight,
        soft_emotion=t.emotion_soft,
        soft_gender=soft_g,
        pseudo_weight=data.pseudo_weight,
    )
    augment = make_augmenter(cfg.framing, cfg.augment, cfg.input_size)
    ds = tf.data.Dataset.from_tensor_slices(
        (
            t.images[..., None],
            data.framing,
            t.emotion_soft,
            soft_g,
            w_e,
            w_g,
            gender_only(t.emotion, t.gender),
            *age_targets(t.age, len(t)),
        )
    )
    ds = ds.shuffle(len(t), seed=cfg.seed, reshuffle_each_iteration=True)
    if cfg.gender_only_fraction < 1.0:
        frac = cfg.gender_only_fraction

        def _draw(*cols):  # type: ignore[no-untyped-def]
            return tf.logical_or(tf.logical_not(cols[6]), tf.random.uniform([]) < frac)

        ds = ds.filter(_draw)
    ds = ds.batch(cfg.batch_size)

    def _map(*cols):  # type: ignore[no-untyped-def]
        img, tag, soft, gender, we, wg, _, age, wa = cols
        y, w = {"emotion": soft, "gender": gender}, {"emotion": we, "gender": wg}
        if cfg.age_loss_weight > 0:
            y["age"], w["age"] = age, wa
        return augment(img, tag), y, w

    return ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def age_targets(age: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The age head's target (age / AGE_SCALE) and loss weight (0 where a sample has no age)."""
    a = np.full(n, -1, np.int64) if age is None else age
    return (np.maximum(a, 0) / AGE_SCALE).astype(np.float32)[:, None], (a >= 0).astype(np.float32)


def gender_only(emotion: np.ndarray, gender: np.ndarray) -> np.ndarray:
    """Samples labelled for gender alone: what ``gender_only_fraction`` thins out (a teacher's
    emotion target on them does not count: it is not a label)."""
    return np.asarray((emotion < 0) & (gender >= 0))


def epoch_samples(data: TrainingData, cfg: TrainConfig) -> int:
    """Expected training samples per epoch (gender-only samples are drawn at ``gender_only_fraction``)."""
    n_gender_only = int(np.count_nonzero(gender_only(data.train.emotion, data.train.gender)))
    return len(data.train) - n_gender_only + round(n_gender_only * cfg.gender_only_fraction)


def val_dataset(data: TrainingData, cfg: TrainConfig) -> tf.data.Dataset:
    v = data.val
    assert v.emotion_soft is not None
    onehot = np.zeros_like(v.emotion_soft)
    has = v.emotion >= 0
    onehot[np.flatnonzero(has), v.emotion[has]] = 1.0
    w_e = has.astype(np.float32)  # unweighted accuracy on validation: what we report
    w_g = (v.gender >= 0).astype(np.float32)
    x = (v.images.astype(np.float32) / 255.0)[..., None]
    g_onehot = np.eye(2, dtype=np.float32)[np.clip(v.gender, 0, None)]
    y, w = {"emotion": onehot, "gender": g_onehot}, {"emotion": w_e, "gender": w_g}
    if cfg.age_loss_weight > 0:
        y["age"], w["age"] = age_targets(v.age, len(v))
    ds = tf.data.Dataset.from_tensor_slices((x, y, w))
    return ds.batch(256)


class ScoreAndSchedule(keras.callbacks.Callback):  # type: ignore[misc]
    """Cosine learning rate over whichever ends first, the epoch plan or the wall-clock budget.

    Training then always ends annealed, however many epochs the machine manages; ``val_score`` (the
    mean validation accuracy of the heads in ``scored_heads``) is what checkpoints and early
    stopping watch. A head without validation labels (emotion in a gender-only run) is left out:
    Keras reports its accuracy over no samples as 0, which would halve the score and show as a
    head that learned nothing.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        steps_per_epoch: int,
        state_file: Path,
        scored_heads: tuple[str, ...] = ("emotion", "gender"),
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.scored_heads = scored_heads
        self.steps_per_epoch = steps_per_epoch
        self.state_file = state_file
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.t0 = time.monotonic()
        self.epoch = 0
        self.progress = 0.0

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step_p = (self.epoch * self.steps_per_epoch + batch) / (self.cfg.epochs * self.steps_per_epoch)
        time_p = self._elapsed() / (self.cfg.max_minutes * 60.0) if self.cfg.max_minutes else 0.0
        self.progress = min(1.0, max(step_p, time_p))
        warm = self.cfg.warmup_epochs / max(self.cfg.epochs, 1)
        if self.progress < warm:
            lr = self.cfg.learning_rate * (0.1 + 0.9 * self.progress / warm)
        else:
            q = (self.progress - warm) / max(1e-9, 1.0 - warm)
            lr = self.cfg.learning_rate * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * q)))
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            parts = [logs[f"val_{h}_acc"] for h in self.scored_heads if f"val_{h}_acc" in logs]
            logs["val_score"] = float(np.mean(parts)) if parts else 0.0
            logs["lr"] = float(self.model.optimizer.learning_rate.numpy())

            def figure(key: str, head: str) -> str:
                value = logs.get(key) if head in self.scored_heads else None
                return "-" if value is None else f"{value:.4f}"

            log.info(
                "epoch %d: emotion acc %s val %s | gender acc %s val %s | lr %.2e | %.0f s",
                epoch + 1,
                figure("emotion_acc", "emotion"),
                figure("val_emotion_acc", "emotion"),
                figure("gender_acc", "gender"),
                figure("val_gender_acc", "gender"),
                logs["lr"],
                self._elapsed(),
            )
        self.state_file.write_text(json.dumps({"elapsed_s": self._elapsed(), "epoch": epoch + 1}))
        if self.progress >= 1.0 and self.cfg.max_minutes and epoch + 1 < self.cfg.epochs:
            log.info("time budget of %.0f min reached; stopping", self.cfg.max_minutes)
            self.model.stop_training = True


def check_run_dir(out: Path, spec: ModelSpec) -> None:
    """Refuse to resume a run directory that holds another architecture's checkpoints."""
    spec_path = out / SPEC_FILE
    if spec_path.is_file():
        old = json.loads(spec_path.read_text())
        if old != spec.as_dict():
            diff = {k: (old.get(k), v) for k, v in spec.as_dict().items() if old.get(k) != v}
            raise CheckpointMismatchError(
                f"{out} holds checkpoints of another model ({diff}); use a new output_dir or delete it"
            )
    out.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec.as_dict(), indent=2))


def load_weights_checked(model: keras.Model, weights: Path) -> None:
    if not weights.is_file():
        raise CheckpointMismatchError(f"checkpoint not found: {weights}")
    try:
        model.load_weights(weights)
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointMismatchError(
            f"checkpoint {weights} does not fit architecture {model.name}: {first[:160]}"
        ) from None


@dataclass
class TrainResult:
    model: keras.Model
    history_csv: Path
    best_weights: Path
    epochs_run: int
    seconds: float
    precision: str


def scored_heads(data: TrainingData) -> tuple[str, ...]:
    """The heads that have validation labels, so the checkpoint score can rank them."""
    heads = tuple(
        h for h, labels in (("emotion", data.val.emotion), ("gender", data.val.gender)) if (labels >= 0).any()
    )
    return heads or ("emotion", "gender")


def fit(cfg: TrainConfig, data: TrainingData, *, verbose: int = 2) -> TrainResult:
    keras.utils.set_random_seed(cfg.seed)
    spec = spec_from_config(cfg)
    out = cfg.output_dir
    check_run_dir(out, spec)
    precision = resolve_precision(cfg.precision)
    model = build_model(spec, precision=precision)
    compile_model(model, cfg)
    log.info("model %s: %d parameters, %s", model.name, model.count_params(), precision)
    steps = math.ceil(epoch_samples(data, cfg) / cfg.batch_size)
    history_csv = out / "history.csv"
    best = out / BEST_WEIGHTS
    callbacks: list[keras.callbacks.Callback] = [
        # first, so validation, checkpoints and the backup all see the averaged weights
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema_momentum else []),
        ScoreAndSchedule(cfg, steps, out / "train_state.json", scored_heads(data)),
        keras.callbacks.ModelCheckpoint(
            best, monitor="val_score", mode="max", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_score", mode="max", patience=cfg.early_stopping_patience, restore_best_weights=False
        ),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.BackupAndRestore(str(out / "backup")),
    ]
    t0 = time.monotonic()
    hist = model.fit(
        train_dataset(data, cfg),
        validation_data=val_dataset(data, cfg),
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.monotonic() - t0
    if precision != "float32":  # what is saved, evaluated and exported is the float32 graph
        model = build_model(spec)
        compile_model(model, cfg)
    load_weights_checked(model, best)
    return TrainResult(model, history_csv, best, len(hist.history.get("loss", [])), seconds, precision)


def plot_history(history_csv: Path, out_png: Path) -> None:
    """Training curves (loss and accuracy of both heads, train vs validation) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with history_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in (
        (axes[0], "loss", "total loss"),
        (axes[1], "emotion_acc", "emotion accuracy"),
        (axes[2], "gender_acc", "gender accuracy"),
    ):
        for prefix, style in (("", "-"), ("val_", "--")):
            col = prefix + key
            if col in rows[0]:
                ax.plot(epochs, [float(r[col]) for r in rows], style, label=col)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
