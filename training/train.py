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

from agent.model_contract import EMOTIONS, GENDERS
from training.augment import make_augmenter
from training.config import TrainConfig
from training.datasets import onehot
from training.errors import CheckpointMismatchError
from training.model import ModelSpec, build_model
from training.tfenv import resolve_precision
from training.training_data import TrainingData

log = logging.getLogger(__name__)

BEST_WEIGHTS = "best.weights.h5"
SPEC_FILE = "spec.json"


def spec_from_config(cfg: TrainConfig) -> ModelSpec:
    return ModelSpec(
        architecture=cfg.architecture,
        input_size=cfg.input_size,
        dropout=cfg.dropout,
        weight_decay=cfg.weight_decay,
    )


def masks(
    data_emotion: np.ndarray, data_gender: np.ndarray, class_w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample loss weights: a missing label (-1) gets weight 0, so that head learns nothing from
    it; that is what lets emotion-only and gender-only datasets train one network."""
    w_e = np.where(data_emotion >= 0, class_w[np.clip(data_emotion, 0, None)], 0.0).astype(np.float32)
    return w_e, (data_gender >= 0).astype(np.float32)


def compile_model(model: keras.Model, cfg: TrainConfig) -> None:
    """Adam (its learning rate is then driven by the schedule callback) and a cross-entropy per head."""
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss={head: keras.losses.CategoricalCrossentropy() for head in ("emotion", "gender")},
        weighted_metrics={
            "emotion": [keras.metrics.CategoricalAccuracy(name="acc")],
            "gender": [keras.metrics.CategoricalAccuracy(name="acc")],
        },
    )


def train_dataset(data: TrainingData, cfg: TrainConfig) -> tf.data.Dataset:
    """Augmented batches of ``(image, targets, loss weights)``. The emotion target is soft (a label's
    one-hot blended with FER+ votes where configured); the gender target is the label's one-hot."""
    t = data.train
    assert t.emotion_soft is not None
    w_e, w_g = masks(t.emotion, t.gender, data.emotion_class_weight)
    augment = make_augmenter(cfg.framing, cfg.augment, cfg.input_size)
    ds = tf.data.Dataset.from_tensor_slices(
        (t.images[..., None], data.framing, t.emotion_soft, onehot(t.gender, len(GENDERS)), w_e, w_g)
    )
    ds = ds.shuffle(len(t), seed=cfg.seed, reshuffle_each_iteration=True).batch(cfg.batch_size)

    def _map(*cols):  # type: ignore[no-untyped-def]
        img, tag, soft, gender, we, wg = cols
        return augment(img, tag), {"emotion": soft, "gender": gender}, {"emotion": we, "gender": wg}

    return ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def val_dataset(data: TrainingData) -> tf.data.Dataset:
    """Validation as the reporting protocol sees it: whole images, hard labels, every sample weighing
    the same (unweighted accuracy is what is reported)."""
    v = data.val
    x = (v.images.astype(np.float32) / 255.0)[..., None]
    y = {"emotion": onehot(v.emotion, len(EMOTIONS)), "gender": onehot(v.gender, len(GENDERS))}
    w = {"emotion": (v.emotion >= 0).astype(np.float32), "gender": (v.gender >= 0).astype(np.float32)}
    return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(256)


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


def start_from_exported(model: keras.Model, path: Path, data: TrainingData) -> None:
    """Load ``path`` (``init_from``) and log where it stands on validation before any step."""
    from training.warm_start import load_exported

    rng = np.random.default_rng(0)
    pick = rng.permutation(len(data.val))[:4096]
    load_exported(model, path, (data.val.images[pick].astype(np.float32) / 255.0)[..., None])
    scores = model.evaluate(val_dataset(data), verbose=0, return_dict=True)
    log.info(
        "starting from %s: validation emotion %.4f, gender %.4f (float, one pass, before training)",
        path,
        scores.get("emotion_acc", float("nan")),
        scores.get("gender_acc", float("nan")),
    )


def fit(cfg: TrainConfig, data: TrainingData, *, verbose: int = 2) -> TrainResult:
    keras.utils.set_random_seed(cfg.seed)
    spec = spec_from_config(cfg)
    out = cfg.output_dir
    check_run_dir(out, spec)
    precision = resolve_precision(cfg.precision)
    model = build_model(spec, precision=precision)
    compile_model(model, cfg)
    log.info("model %s: %d parameters, %s", model.name, model.count_params(), precision)
    if cfg.init_from is not None and not (out / "backup").exists():
        start_from_exported(model, cfg.init_from, data)
    steps = math.ceil(len(data.train) / cfg.batch_size)
    history_csv = out / "history.csv"
    best = out / BEST_WEIGHTS
    callbacks: list[keras.callbacks.Callback] = [
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
        validation_data=val_dataset(data),
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
