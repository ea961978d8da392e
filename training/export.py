"""Full-integer int8 conversion, the contract check, float-vs-int8 parity, and the model card."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from agent.model_contract import (
    EMOTIONS,
    GENDERS,
    CardCrop,
    CardFile,
    CardInput,
    CardLabels,
    CardQuantization,
    ModelCard,
)
from training.card import CARD_FILE, write_card_markdown
from training.config import TrainConfig
from training.datasets import Samples, load_fer2013_folder, load_utkface
from training.errors import ExportError
from training.evaluate import TFLiteModel, load_test_sets, score
from training.model import build_model
from training.train import BEST_WEIGHTS, load_weights_checked, spec_from_config
from training.training_data import to_input_size

log = logging.getLogger(__name__)

MODEL_STEM = "facecast_int8"
# Candidate central fractions for ``zoom: auto``: at 48 px, crops of 48, 46, 44, 42 and 40 px.
ZOOM_GRID = (1.0, 0.96, 0.92, 0.875, 0.83)
# A candidate that costs more (mirror averaging doubles the passes) or changes the input (a zoom)
# must beat the plain one by more than this on the validation sum of both heads' accuracies.
MIN_GAIN = 0.002


def representative_images(cfg: TrainConfig, n: int) -> npt.NDArray[np.float32]:
    """Training images (never test), preprocessed exactly as at inference, both datasets mixed."""
    root = cfg.data.root
    size = cfg.input_size
    parts = []
    per_class = max(1, n // (2 * len(EMOTIONS)))
    if cfg.data.fer2013:
        fer = load_fer2013_folder(root / "fer2013", "train", limit_per_class=per_class)
        parts.append(to_input_size(fer, size).images)
    if cfg.data.utkface:
        utk = load_utkface(root / "utkface", "train", limit=None)
        pick = np.random.default_rng(cfg.seed).choice(len(utk), size=min(len(utk), n // 2), replace=False)
        parts.append(to_input_size(utk.subset(pick), size).images)
    if not parts:
        raise ExportError("no training data to draw a representative dataset from")
    images = np.concatenate(parts)[:n]
    return (images.astype(np.float32) / 255.0)[..., None]


def convert_int8(model: keras.Model, rep: npt.NDArray[np.float32]) -> bytes:
    """Full-integer quantization: int8 weights, activations, input and outputs."""

    def gen() -> Iterator[list[npt.NDArray[np.float32]]]:
        for img in rep:
            yield [img[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def zoom_crop(size: int, zoom: float) -> tuple[int, int]:
    """Offset and side of the central crop, an even number of pixels narrower than the input so
    both margins are whole pixels and the crop stays centred (a mirror image zooms the same)."""
    side = min(size, max(2, 2 * round(size * zoom / 2)))
    return (size - side) // 2, side


def with_zoom(model: keras.Model, size: int, zoom: float) -> keras.Model:
    """The model on the centre of its input, enlarged back to full size, inside one graph.

    A slice and a bilinear resize, both int8 operators in TFLite, so the file keeps its contract
    (the whole face crop in) and every consumer gets the framing the network was trained nearest.
    """
    offset, side = zoom_crop(size, zoom)
    inp = keras.Input((size, size, 1), name="image")

    def centre(t: tf.Tensor) -> tf.Tensor:
        crop = t[:, offset : offset + side, offset : offset + side, :]
        return tf.image.resize(crop, (size, size), method="bilinear")

    out = model(keras.layers.Lambda(centre, name="zoom")(inp))
    return keras.Model(
        inp,
        {
            "emotion": keras.layers.Identity(name="emotion")(out["emotion"]),
            "gender": keras.layers.Identity(name="gender")(out["gender"]),
        },
        name=f"{model.name}_zoom",
    )


def with_flip_tta(model: keras.Model, size: int) -> keras.Model:
    """Average the model's outputs on a face and its mirror image, inside one graph.

    The batch is doubled and split again, so an agent that resizes the input to N faces still gets N
    independent results.
    """
    inp = keras.Input((size, size, 1), name="image")
    both = keras.layers.Lambda(lambda t: tf.concat([t, tf.reverse(t, axis=[2])], axis=0), name="mirror")(inp)
    out = model(both)

    def average(t: tf.Tensor) -> tf.Tensor:
        a, b = tf.split(t, 2, axis=0)
        return (a + b) / 2.0

    return keras.Model(
        inp,
        {
            "emotion": keras.layers.Lambda(average, name="emotion")(out["emotion"]),
            "gender": keras.layers.Lambda(average, name="gender")(out["gender"]),
        },
        name=f"{model.name}_fliptta",
    )


def balancing_offset(log_odds: npt.NDArray[np.float32], sex: npt.NDArray[np.int64]) -> float:
    """The log-odds offset that brings male and female recall closest together (smallest offset
    among equals). Recall of one sex rises as the other's falls, so this is a one-dimensional search."""
    grid = np.round(np.arange(-3.0, 3.0001, 0.01), 2)
    male, female = log_odds[sex == 0], log_odds[sex == 1]
    if not len(male) or not len(female):
        return 0.0
    best, best_key = 0.0, (np.inf, np.inf)
    for b in grid:
        gap = abs(float((male + b <= 0).mean()) - float((female + b > 0).mean()))
        key = (round(gap, 6), abs(float(b)))
        if key < best_key:
            best, best_key = float(b), key
    return best


def sex_recall(
    log_odds: npt.NDArray[np.float32], sex: npt.NDArray[np.int64], offset: float
) -> dict[str, float]:
    pred_female = log_odds + offset > 0
    return {
        "male": round(float((~pred_female[sex == 0]).mean()), 4),
        "female": round(float(pred_female[sex == 1].mean()), 4),
    }


def with_gender_offset(model: keras.Model, offset: float) -> keras.Model:
    """Re-weight the gender probabilities by ``exp(offset)`` for female (a log-odds shift), inside
    the graph, so every consumer of the file gets the balanced decision."""
    inp = keras.Input(model.input_shape[1:], name="image")
    out = model(inp)
    weights = tf.constant([[1.0, float(np.exp(offset))]], dtype=tf.float32)

    def shift(t: tf.Tensor) -> tf.Tensor:
        w = t * weights
        return w / tf.reduce_sum(w, axis=1, keepdims=True)

    return keras.Model(
        inp,
        {
            "emotion": keras.layers.Identity(name="emotion")(out["emotion"]),
            "gender": keras.layers.Lambda(shift, name="gender")(out["gender"]),
        },
        name=f"{model.name}_balanced",
    )


def female_log_odds(gender_probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    p = np.clip(np.asarray(gender_probs, np.float64), 1e-7, 1.0)
    return np.asarray(np.log(p[:, 1]) - np.log(p[:, 0]), np.float32)


@dataclass(frozen=True)
class Candidate:
    """One way to run the trained network at inference: a central zoom and/or mirror averaging."""

    zoom: float
    flip: bool

    @property
    def key(self) -> str:
        return f"zoom {self.zoom:g}{' + mirror' if self.flip else ''}"


def candidates(cfg: TrainConfig) -> list[Candidate]:
    """What the config allows, cheapest first: one pass before two, the plain input before a zoom."""
    zooms = ZOOM_GRID if cfg.zoom == "auto" else (float(cfg.zoom),)
    flips = (False, True) if cfg.flip_tta == "auto" else (bool(cfg.flip_tta),)
    return [Candidate(z, f) for f in flips for z in zooms]


def choose(scores: dict[Candidate, float]) -> Candidate:
    """The cheapest candidate within ``MIN_GAIN`` of the best score (the first one is the plain one,
    which any other must beat by more than ``MIN_GAIN``)."""
    plain = next(iter(scores))
    best = max(scores.values())
    if best - scores[plain] <= MIN_GAIN:
        return plain
    return next(c for c, v in scores.items() if v >= best - MIN_GAIN and v - scores[plain] > MIN_GAIN)


def validation_scores(
    model: keras.Model, cfg: TrainConfig, val: Samples
) -> tuple[
    dict[Candidate, dict[str, float]], dict[Candidate, npt.NDArray[np.float32]], npt.NDArray[np.int64]
]:
    """Validation accuracy per head for each candidate (to choose zoom and mirror averaging), and
    each candidate's gender probabilities with their labels (to balance the sexes)."""
    x = (val.images.astype(np.float32) / 255.0)[..., None]
    heads = (("emotion", val.emotion), ("gender", val.gender))
    has_sex = val.gender >= 0
    scores: dict[Candidate, dict[str, float]] = {}
    genders: dict[Candidate, npt.NDArray[np.float32]] = {}
    runs: dict[tuple[float, bool], Any] = {}
    for cand in candidates(cfg):
        zoomed = model if cand.zoom == 1.0 else with_zoom(model, cfg.input_size, cand.zoom)
        for mirrored in (False, True) if cand.flip else (False,):
            if (cand.zoom, mirrored) not in runs:
                # a central crop commutes with the mirror, so the mirror pass is the mirrored input
                xin = x[:, :, ::-1] if mirrored else x
                runs[cand.zoom, mirrored] = zoomed.predict(xin, batch_size=256, verbose=0)
        preds = {h: np.asarray(runs[cand.zoom, False][h]) for h, _ in heads}
        if cand.flip:
            preds = {h: (p + np.asarray(runs[cand.zoom, True][h])) / 2 for h, p in preds.items()}
        scores[cand] = {}
        for head, labels in heads:
            sel = labels >= 0
            hit = np.argmax(preds[head][sel], 1) == labels[sel]
            scores[cand][head] = float(hit.mean()) if sel.any() else 0.0
        genders[cand] = preds["gender"][has_sex]
    return scores, genders, val.gender[has_sex]


def int8_validation(path: Path, val: Samples) -> dict[str, float]:
    """An int8 file's accuracy per head on the run's validation split, and their mean (``score``:
    what checkpoints are chosen by), through LiteRT as the agent runs it."""
    emo_p, gen_p = TFLiteModel(path).predict(val.images.astype(np.float32) / 255.0)
    out: dict[str, float] = {}
    for head, labels, probs in (("emotion", val.emotion, emo_p), ("gender", val.gender, gen_p)):
        sel = labels >= 0
        if sel.any():
            out[head] = round(float((probs[sel].argmax(1) == labels[sel]).mean()), 4)
    out["score"] = round(float(np.mean(list(out.values()))), 4)
    return out


HEAD_TOLERANCE = 0.005
"""How far one head may fall on validation while the mean rises (half a point: inside the noise of
a few thousand validation faces), so a better gender head cannot buy a worse emotion head."""


def ship_decision(new: dict[str, float], shipped: dict[str, float] | None) -> str | None:
    """Why the new model must not replace the shipped one, or None when it may: on the same
    validation split (test sets never decide) it has to beat the shipped file's mean score with no
    head more than ``HEAD_TOLERANCE`` below the shipped file's."""
    if shipped is None:
        return None
    figures = ", ".join(f"{k} {new.get(k, 0):.4f} vs {v:.4f}" for k, v in shipped.items())
    worse = [h for h in ("emotion", "gender") if h in shipped and new.get(h, 0) < shipped[h] - HEAD_TOLERANCE]
    if worse:
        return f"its {' and '.join(worse)} head is worse than the shipped one's on validation ({figures})"
    if new["score"] <= shipped["score"]:
        return f"the new model does not beat the shipped one on validation ({figures})"
    return None


def _keras_predictor(model: keras.Model):  # type: ignore[no-untyped-def]
    def predict(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        out = model.predict(x[..., None], batch_size=256, verbose=0)
        return np.asarray(out["emotion"]), np.asarray(out["gender"])

    return predict


def _recording(predict: Any, into: list[tuple[Any, Any]]) -> Any:
    """``predict`` that also keeps what it returned, so the parity check reuses the test-set
    predictions that scoring already made instead of running both models again."""

    def run(x: npt.NDArray[np.float32]) -> Any:
        out = predict(x)
        into.append(out)
        return out

    return run


def probability_mae(int8: list[tuple[Any, Any]], float_: list[tuple[Any, Any]]) -> dict[str, float]:
    """Mean absolute difference between the int8 and float probabilities per head, over the same
    calls' outputs. Accuracy alone says little about the quantizer: a model whose outputs sit near
    a decision boundary (an undertrained one, or a hard face) flips its label under rounding
    errors far smaller than a point of accuracy suggests."""
    diffs: dict[str, list[float]] = {"emotion": [], "gender": []}
    for a_out, b_out in zip(int8, float_, strict=True):
        for head, a, b in zip(("emotion", "gender"), a_out, b_out, strict=True):
            if len(a):
                diffs[head].append(float(np.abs(np.asarray(a) - np.asarray(b)).mean()))
    return {head: round(float(np.mean(v)), 4) for head, v in diffs.items() if v}


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        "emotion_accuracy": metrics["fer2013_test"]["emotion"]["accuracy"],
        "gender_accuracy": metrics["utkface_test"]["gender"]["accuracy"],
    }


def export_and_report(cfg: TrainConfig, ship_dir: Path | None = None, *, force: bool = False) -> Path:
    """Export, evaluate and card the run's best checkpoint; with ``ship_dir``, copy it there only if
    it beats the model already in ``ship_dir`` on validation (or ``force``)."""
    from training.training_data import build_training_data

    out = cfg.output_dir
    spec = spec_from_config(cfg)
    model = build_model(spec)
    load_weights_checked(model, out / BEST_WEIGHTS)
    val = build_training_data(cfg).val
    val_scores, val_gender, val_sex = validation_scores(model, cfg, val)
    totals = {c: v["emotion"] + v["gender"] for c, v in val_scores.items()}
    chosen = choose(totals)
    log.info(
        "validation (emotion, gender) by candidate: %s; chosen: %s",
        {c.key: (round(v["emotion"], 4), round(v["gender"], 4)) for c, v in val_scores.items()},
        chosen.key,
    )
    if chosen.zoom != 1.0:
        model = with_zoom(model, cfg.input_size, chosen.zoom)
    if chosen.flip:
        model = with_flip_tta(model, cfg.input_size)
    odds = female_log_odds(val_gender[chosen])
    offset = balancing_offset(odds, val_sex) if cfg.gender_balance else 0.0
    balance = {
        "offset_log_odds": offset,
        "validation_recall_before": sex_recall(odds, val_sex, 0.0),
        "validation_recall_after": sex_recall(odds, val_sex, offset),
    }
    log.info("gender balance on validation: %s", balance)
    if offset != 0.0:
        model = with_gender_offset(model, offset)
    rep = representative_images(cfg, cfg.representative_samples)
    tflite_path = out / f"{MODEL_STEM}.tflite"
    tflite_path.write_bytes(convert_int8(model, rep))
    int8 = TFLiteModel(tflite_path, input_size=cfg.input_size)  # the contract's checks, as the agent's
    log.info("int8 model %s: %d bytes", tflite_path, tflite_path.stat().st_size)
    shipped_path = None if ship_dir is None else ship_dir / tflite_path.name
    versus = {"new": int8_validation(tflite_path, val)}
    if shipped_path is not None and shipped_path.is_file():
        versus["shipped"] = int8_validation(shipped_path, val)
    log.info("int8 validation, this run against the shipped model: %s", versus)

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    sets = load_test_sets(cfg.data.root, cfg.input_size, cfg.data.test_limit)
    int8_out: list[tuple[Any, Any]] = []
    float_out: list[tuple[Any, Any]] = []
    m_int8 = score(_recording(int8.predict, int8_out), sets, plots, "int8")
    m_float = score(_recording(_keras_predictor(model), float_out), sets, None, "float")
    h_int8, h_float = _headline(m_int8), _headline(m_float)
    parity = {
        "float": h_float,
        "int8": h_int8,
        "drop_points": {k: round((h_float[k] - h_int8[k]) * 100, 2) for k in h_int8},
        "probability_mae": probability_mae(int8_out, float_out),
    }
    latency = int8.latency_ms(1000)
    summary_path = out / "train_summary.json"
    train_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    now = datetime.now(timezone.utc)
    card = ModelCard(
        version=now.strftime("%Y.%m.%d"),
        created=now.isoformat(timespec="seconds"),
        architecture=spec.as_dict(),
        parameters=int(model.count_params()),
        flip_tta=chosen.flip,
        zoom=chosen.zoom,
        file=CardFile(name=tflite_path.name, bytes=tflite_path.stat().st_size),
        input=CardInput(
            height=cfg.input_size,
            width=cfg.input_size,
            quantization=CardQuantization(scale=int8.in_scale, zero_point=int8.in_zp),
        ),
        preprocessing={
            "color": "grayscale (ITU-R 601 luma, OpenCV cvtColor)",
            "resize": "OpenCV INTER_AREA when shrinking, INTER_LINEAR when enlarging, to height x width",
            "scale": "pixel / 255 -> [0, 1], then quantize with input.quantization",
            "implementation": "agent.preprocess",
        },
        crop=CardCrop(margin=cfg.framing.agent_margin),
        labels=CardLabels(emotion=EMOTIONS, gender=GENDERS),
        outputs={"emotion": "probabilities (softmax)", "gender": "probabilities (softmax)"},
        metrics={
            "protocol": "whole test image as the dataset gives it, grayscale, resized to the input size",
            "int8": m_int8,
            "float": {
                k: {h: {kk: vv for kk, vv in r.items() if kk != "confusion"} for h, r in v.items()}
                for k, v in m_float.items()
            },
            "parity": parity,
            "latency_ms": {**latency, "runtime": "ai-edge-litert", "note": "one image, batch 1"},
        },
        # The reported training figures (validation) come from the run's summary.
        training={
            "epochs_run": train_summary.get("epochs_run"),
            "seconds": train_summary.get("seconds"),
            "init_from": train_summary.get("init_from"),
            "data": train_summary.get("data"),
            "emotion_class_weight": train_summary.get("emotion_class_weight"),
            "class_imbalance": f"per-sample loss weights (inverse class frequency)^{cfg.class_weight_power}",
            "ferplus_blend": cfg.data.ferplus_blend,
            "augmentation": json.loads(cfg.augment.model_dump_json()),
            "framing": json.loads(cfg.framing.model_dump_json()),
            "seed": cfg.seed,
            "validation": {
                c.key: {h: round(v, 4) for h, v in heads.items()} for c, heads in val_scores.items()
            },
            "flip_tta": {"setting": cfg.flip_tta, "used": chosen.flip},
            "zoom": {"setting": cfg.zoom, "used": chosen.zoom, "grid": list(ZOOM_GRID)},
            "inference_choice": {
                "rule": f"cheapest candidate within {MIN_GAIN * 50:g} points of the best validation mean",
                "chosen": chosen.key,
                "validation_gain_points": round((totals[chosen] - next(iter(totals.values()))) * 50, 2),
            },
            "gender_balance": balance,
            "validation_int8": versus,
        },
    )
    card_path = out / f"{MODEL_STEM}.json"
    card_path.write_text(card.to_json())
    write_card_markdown(card, out / CARD_FILE)
    log.info(
        "emotion (FER2013 test) int8 %.4f float %.4f | gender (UTKFace test) int8 %.4f float %.4f",
        h_int8["emotion_accuracy"],
        h_float["emotion_accuracy"],
        h_int8["gender_accuracy"],
        h_float["gender_accuracy"],
    )
    if ship_dir is not None:
        refusal = ship_decision(versus["new"], versus.get("shipped"))
        if refusal is not None and not force:
            raise ExportError(
                f"not shipped to {ship_dir}: {refusal}; the run's files are in {out} (--force ships)"
            )
        if refusal is not None:
            log.warning("shipping anyway (--force): %s", refusal)
        ship_dir.mkdir(parents=True, exist_ok=True)
        for p in (tflite_path, card_path, out / CARD_FILE):
            shutil.copy2(p, ship_dir / p.name)
        # The card points at figures/ beside it: ship them too, or it would show the last model's.
        figures = ship_dir / "figures"
        figures.mkdir(exist_ok=True)
        for png in [*sorted((out / "plots").glob("*.png")), out / "training_curves.png"]:
            if png.is_file():
                shutil.copy2(png, figures / png.name)
        log.info("shipped to %s", ship_dir)
    return tflite_path
