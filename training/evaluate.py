"""Evaluation by the reporting protocol: whole test image -> grayscale -> model input size.

Metrics are computed in numpy so the same code scores the float Keras model and the int8 TFLite
model (run through LiteRT, as on the device).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.model_contract import EMOTIONS, GENDERS, OUTPUTS, check_signature
from agent.preprocess import dequantize, quantize
from training.datasets import (
    FERPLUS_MAP,
    Samples,
    load_aaf,
    load_fer2013_folder,
    load_ferplus_plurality,
    load_lfw,
    load_utkface,
)

log = logging.getLogger(__name__)

RACES = ("white", "black", "asian", "indian", "others")
AGE_GROUPS: tuple[tuple[str, int, int], ...] = (
    ("0-12", 0, 12),
    ("13-19", 13, 19),
    ("20-39", 20, 39),
    ("40-59", 40, 59),
    ("60+", 60, 200),
)

Predictor = Callable[[npt.NDArray[np.float32]], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def confusion(y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def classification_report(
    y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], labels: Sequence[str]
) -> dict[str, Any]:
    n = len(labels)
    cm = confusion(y_true, y_pred, n)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    return {
        "n": len(y_true),
        "accuracy": round(float((y_true == y_pred).mean()) if len(y_true) else 0.0, 4),
        "macro_f1": round(float(f1[support > 0].mean()) if (support > 0).any() else 0.0, 4),
        "per_class_recall": {lab: round(float(r), 4) for lab, r in zip(labels, recall, strict=True)},
        "confusion": cm.tolist(),
    }


def gender_breakdown(
    y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], samples: Samples
) -> dict[str, Any]:
    ok = y_true == y_pred

    def recall_per_sex(sel: npt.NDArray[np.bool_]) -> dict[str, float]:
        return {
            g: round(float(ok[sel & (y_true == i)].mean()), 4)
            for i, g in enumerate(GENDERS)
            if (sel & (y_true == i)).any()
        }

    per_sex = recall_per_sex(np.ones_like(ok))
    out: dict[str, Any] = {
        "per_sex": per_sex,
        "sex_gap_points": round(abs(per_sex.get("male", 0) - per_sex.get("female", 0)) * 100, 2),
    }
    if samples.race is not None:
        out["per_race"] = {
            r: {
                "accuracy": round(float(ok[samples.race == i].mean()), 4),
                "n": int((samples.race == i).sum()),
            }
            for i, r in enumerate(RACES)
            if (samples.race == i).any()
        }
    if samples.age is not None:
        out["per_age_group"] = {}
        for name, lo, hi in AGE_GROUPS:
            sel = (samples.age >= lo) & (samples.age <= hi)
            if sel.any():
                # By sex too: a set's gap between the sexes can sit in one age group (children).
                out["per_age_group"][name] = {
                    "accuracy": round(float(ok[sel].mean()), 4),
                    "n": int(sel.sum()),
                    "per_sex": recall_per_sex(sel),
                }
    return out


def plot_confusion(cm: npt.NDArray[np.int64], labels: Sequence[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.75 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{cm[i, j]}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class TFLiteModel:
    """An int8 model through LiteRT's signature runner, checked against the model contract and read
    by output name, exactly as the agent reads it."""

    def __init__(self, path: Path, num_threads: int = 1, *, input_size: int | None = None) -> None:
        from agent.runtime import load_interpreter

        self.path = path
        self.interpreter = load_interpreter(path, num_threads=num_threads)
        expected = None if input_size is None else (input_size, input_size)
        self.signature = check_signature(self.interpreter, path.name, input_size=expected)
        self.runner = self.signature.runner
        self.in_scale, self.in_zp = self.signature.input_quantization

    @property
    def input_size(self) -> int:
        return self.signature.input_size[0]

    def _quantized(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.int8]:
        return quantize(x.reshape(self.signature.input_shape), self.in_scale, self.in_zp)

    def predict_one(self, x: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        raw = self.runner(**{self.signature.input_name: self._quantized(x)})
        quant = self.signature.output_quantization
        return {name: dequantize(raw[name], *quant[name]).reshape(-1) for name in OUTPUTS}

    def predict(self, x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        emo, gen = [], []
        for img in x:
            o = self.predict_one(img)
            emo.append(o["emotion"])
            gen.append(o["gender"])
        return np.stack(emo), np.stack(gen)

    def latency_ms(self, runs: int = 1000) -> dict[str, float]:
        size = self.input_size
        q = self._quantized(np.random.default_rng(0).random((size, size), dtype=np.float32))
        feed = {self.signature.input_name: q}
        for _ in range(50):
            self.runner(**feed)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.runner(**feed)
            times.append((time.perf_counter() - t) * 1000.0)
        times.sort()
        return {
            "median": round(statistics.median(times), 4),
            "p95": round(times[int(0.95 * len(times)) - 1], 4),
            "runs": runs,
            "threads": 1,
        }


def load_test_sets(datasets: Path, size: int, limit: int | None = None) -> dict[str, Samples]:
    """The reported test sets; ``limit`` only for smoke runs (figures from it are not comparable).

    With the FER+ map present, ``fer2013_test_ferplus`` holds the FER2013 test images that have a
    FER+ crowd label, labelled with it (see :func:`ferplus_test_set`)."""
    from training.training_data import to_input_size

    fer = to_input_size(load_fer2013_folder(datasets / "fer2013", "test", limit_per_class=limit), size)
    utk = to_input_size(load_utkface(datasets / "utkface", "test", limit=limit), size)
    sets = {"fer2013_test": fer, "utkface_test": utk}
    # Reported whole (every image of every person): the figure outside evaluators would compute.
    for name, folder, load in (("aaf_test", "aaf", load_aaf), ("lfw_test", "lfw", load_lfw)):
        if (datasets / folder).is_dir():
            sets[name] = to_input_size(load(datasets / folder, "test", limit=limit), size)
    map_csv = datasets / "ferplus" / FERPLUS_MAP
    if map_csv.is_file():
        sets["fer2013_test_ferplus"] = ferplus_test_set(fer, load_ferplus_plurality(map_csv, "test"))
    return sets


def ferplus_test_set(fer: Samples, crowd: dict[str, int]) -> Samples:
    """The FER2013 images that have a FER+ crowd label, relabelled with it. Records how often
    FER2013's own label agrees with the crowd's (``extra["fer2013_label_agreement"]``): the
    ceiling that label noise puts on FER2013 accuracy, and the reason to report both."""
    index = [i for i, name in enumerate(fer.names) if name in crowd]
    out = fer.subset(index)
    labels = np.array([crowd[name] for name in out.names], dtype=np.int64)
    agreement = float((out.emotion == labels).mean()) if len(labels) else 0.0
    out.emotion = labels
    out.source = "fer2013+ferplus"
    out.extra["fer2013_label_agreement"] = f"{agreement:.4f}"
    return out


def score(predict: Predictor, sets: dict[str, Samples], plots: Path | None, tag: str) -> dict[str, Any]:
    """Per head: accuracy, macro-F1, per-class recall, confusion (PNG); gender by sex, race, age."""
    out: dict[str, Any] = {}
    for name, s in sets.items():
        x = s.images.astype(np.float32) / 255.0
        emo_p, gen_p = predict(x)
        if (s.emotion >= 0).any():
            sel = s.emotion >= 0
            rep = classification_report(s.emotion[sel], emo_p[sel].argmax(1), EMOTIONS)
            prefixes = {"public_test": "PublicTest", "private_test": "PrivateTest"}
            for key, prefix in prefixes.items():
                part = np.array([n.split("/")[-1].startswith(prefix) for n in s.names]) & sel
                if part.any():
                    rep[key] = round(float((emo_p[part].argmax(1) == s.emotion[part]).mean()), 4)
            if "fer2013_label_agreement" in s.extra:
                rep["fer2013_label_agreement"] = float(s.extra["fer2013_label_agreement"])
            out[name] = {"emotion": rep}
            if plots is not None:
                plot_confusion(
                    np.asarray(rep["confusion"]),
                    EMOTIONS,
                    f"{name} emotion ({tag})",
                    plots / f"confusion_{name}_emotion_{tag}.png",
                )
        if (s.gender >= 0).any():
            sel = s.gender >= 0
            pred = gen_p[sel].argmax(1)
            rep = classification_report(s.gender[sel], pred, GENDERS)
            rep.update(gender_breakdown(s.gender[sel], pred, s.subset(np.flatnonzero(sel))))
            out.setdefault(name, {})["gender"] = rep
            if plots is not None:
                plot_confusion(
                    np.asarray(rep["confusion"]),
                    GENDERS,
                    f"{name} gender ({tag})",
                    plots / f"confusion_{name}_gender_{tag}.png",
                )
    return out


def evaluate_tflite_cli(model: Path, datasets: Path, out: Path) -> dict[str, Any]:
    """``facecast-train evaluate MODEL``: score any contract-following .tflite on the test sets."""
    out.mkdir(parents=True, exist_ok=True)
    m = TFLiteModel(model)
    result = score(m.predict, load_test_sets(datasets, m.input_size), out, "int8")
    result["latency_ms"] = m.latency_ms()
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    for name, heads in result.items():
        if isinstance(heads, dict):
            for head, rep in heads.items():
                if isinstance(rep, dict) and "accuracy" in rep:
                    log.info(
                        "%s %s: accuracy %.4f macro-F1 %.4f", name, head, rep["accuracy"], rep["macro_f1"]
                    )
    return result
