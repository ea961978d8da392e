"""Find UTKFace gender labels that a trained model confidently contradicts.

UTKFace's gender field is wrong on some faces (the model card's audit reads most of the shipped
model's confident test errors as mislabelled). A face that a model still reads as the other sex at
high confidence after training on it is the likeliest kind of such an error, so the list this writes
can go to ``data.utkface_exclude`` for the next run. It never touches validation or test selection:
run it on the training split (the default) with a model that was not trained on validation.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from training.datasets import GENDERS, DatasetError, load_utkface
from training.distill import Teacher

log = logging.getLogger(__name__)

FIELDS = ("file", "label", "predicted", "confidence", "age")


def flag_gender_labels(
    model: Path, datasets: Path, out: Path, *, split: str = "train", min_confidence: float = 0.95
) -> int:
    """Write the faces of ``split`` whose label the model contradicts with at least
    ``min_confidence``, most confident first; returns how many."""
    if not 0.5 < min_confidence <= 1.0:
        raise DatasetError(f"--min-confidence must be in (0.5, 1], got {min_confidence}")
    net = Teacher(model, what="model")
    faces = load_utkface(datasets / "utkface", split)
    _, gender = net.probabilities(faces)
    predicted = gender.argmax(axis=1)
    confidence = gender.max(axis=1)
    assert faces.age is not None
    flagged = [
        i
        for i in np.argsort(-confidence, kind="stable")
        if predicted[i] != faces.gender[i] and confidence[i] >= min_confidence
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for i in flagged:
            writer.writerow(
                (
                    faces.names[i],
                    GENDERS[faces.gender[i]],
                    GENDERS[predicted[i]],
                    round(float(confidence[i]), 4),
                    int(faces.age[i]),
                )
            )
    log.info(
        "%d of %d UTKFace %s faces flagged (>= %.2f confidence) -> %s",
        len(flagged),
        len(faces),
        split,
        min_confidence,
        out,
    )
    return len(flagged)
