"""Assemble training and validation sets from the configured sources.

Training images are stored on a common ``canvas`` (64 px) with a framing tag, and brought to the
model's input size by random crop-scale augmentation (see ``training.augment``). Validation and test
images follow the reporting protocol instead: the dataset's whole image, grayscale, resized to the
input size with ``agent.preprocess`` — exactly what the agent and outside evaluators feed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.model_contract import EMOTIONS
from agent.preprocess import resize
from training.config import TrainConfig
from training.datasets import (
    FERPLUS_MAP,
    DatasetError,
    Samples,
    attach_ferplus,
    concat,
    fer2013_duplicate_groups,
    fer2013_train_exclusions,
    load_aaf,
    load_fer2013_csv,
    load_fer2013_folder,
    load_ferplus_votes,
    load_labelled_folder,
    load_lfw,
    load_manifest,
    load_utkface,
    split_validation,
    utkface_conflicting_gender,
    utkface_split_names,
)

log = logging.getLogger(__name__)

TIGHT, LOOSE, WIDE = 0, 1, 2  # framing tags: see training.augment


@dataclass
class TrainingData:
    train: Samples  # images at canvas size
    framing: npt.NDArray[np.int64]  # TIGHT, LOOSE or WIDE per training sample
    val: Samples  # images at input size, protocol preprocessing
    emotion_class_weight: npt.NDArray[np.float32]
    summary: dict[str, int]


def to_input_size(samples: Samples, size: int) -> Samples:
    """Protocol preprocessing for evaluation: the whole image, resized (grayscale already)."""
    if samples.images.shape[1:] == (size, size):
        return samples
    out = samples.subset(np.arange(len(samples)))
    out.images = np.stack([resize(im, size, size) for im in samples.images])
    return out


def class_weights(labels: npt.NDArray[np.int64], n_classes: int, power: float) -> npt.NDArray[np.float32]:
    """Inverse-frequency weights raised to ``power`` (0.5: a deliberate middle ground), mean 1."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    w = (counts.sum() / (n_classes * counts)) ** power
    w = w / (w * counts).sum() * counts.sum()
    return np.asarray(w, dtype=np.float32)


def build_training_data(cfg: TrainConfig) -> TrainingData:
    root = cfg.data.root
    canvas = cfg.framing.canvas
    size = cfg.input_size
    train_parts: list[Samples] = []
    framing: list[npt.NDArray[np.int64]] = []
    val_parts: list[Samples] = []
    summary: dict[str, int] = {}

    if cfg.data.fer2013:
        if cfg.data.fer2013_csv is not None:
            fer_all = load_fer2013_csv(cfg.data.fer2013_csv, "train")
            fer_train, fer_val = split_validation(fer_all, cfg.data.val_fraction)
        else:
            fer_root = root / "fer2013"
            excluded = fer2013_train_exclusions(fer_root)
            fer_all = load_fer2013_folder(
                fer_root, "train", limit_per_class=cfg.data.limit_per_class, exclude=excluded
            )
            summary["fer2013_excluded_blank_or_test_duplicate"] = len(excluded)
            if cfg.data.ferplus_blend > 0:
                votes_path = root / "ferplus" / FERPLUS_MAP
                found = attach_ferplus(fer_all, load_ferplus_votes(votes_path))
                summary["ferplus_matched"] = found
                assert fer_all.emotion_soft is not None
                onehot = np.eye(len(EMOTIONS), dtype=np.float32)[fer_all.emotion]
                b = cfg.data.ferplus_blend
                fer_all.emotion_soft = (1.0 - b) * onehot + b * fer_all.emotion_soft
            fer_train, fer_val = split_validation(
                fer_all, cfg.data.val_fraction, fer2013_duplicate_groups(fer_root)
            )
        summary["fer2013_train"] = len(fer_train)
        summary["fer2013_val"] = len(fer_val)
        train_parts.append(fer_train)
        framing.append(np.full(len(fer_train), TIGHT, dtype=np.int64))
        val_parts.append(to_input_size(fer_val, size))

    if cfg.data.utkface:
        utk_root = root / "utkface"
        # Validation keeps them: a pair labelled both ways costs every model the same one error.
        conflicting = utkface_conflicting_gender(utk_root)
        utk_train = load_utkface(utk_root, "train", limit=cfg.data.gender_limit, exclude=conflicting)
        utk_val = load_utkface(utk_root, "val", size=None, limit=cfg.data.gender_limit)
        train_names = set(utkface_split_names(utk_root, "train"))
        summary["utkface_excluded_conflicting_gender"] = len(conflicting & train_names)
        summary["utkface_train"] = len(utk_train)
        summary["utkface_val"] = len(utk_val)
        train_parts.append(utk_train)
        framing.append(np.full(len(utk_train), LOOSE, dtype=np.int64))
        val_parts.append(to_input_size(utk_val, size))

    lim = cfg.data.gender_limit
    if cfg.data.aaf:
        aaf_train = load_aaf(root / "aaf", "train", limit=lim)
        aaf_val = load_aaf(root / "aaf", "val", limit=lim)
        summary["aaf_train"], summary["aaf_val"] = len(aaf_train), len(aaf_val)
        train_parts.append(aaf_train)
        framing.append(np.full(len(aaf_train), WIDE, dtype=np.int64))
        val_parts.append(to_input_size(aaf_val, size))
    if cfg.data.lfw:
        lfw_train = load_lfw(root / "lfw", "train", per_person=cfg.data.lfw_per_person, limit=lim)
        lfw_val = load_lfw(root / "lfw", "val", limit=lim)
        summary["lfw_train"], summary["lfw_val"] = len(lfw_train), len(lfw_val)
        train_parts.append(lfw_train)
        framing.append(np.full(len(lfw_train), TIGHT, dtype=np.int64))
        val_parts.append(to_input_size(lfw_val, size))

    own = [(f"manifest:{m.name}", load_manifest(m, size=canvas)) for m in cfg.data.manifests]
    for head, folders in (("emotion", cfg.data.emotion_folders), ("gender", cfg.data.gender_folders)):
        own += [(f"{head}_folder:{f.name}", load_labelled_folder(f, size=canvas, head=head)) for f in folders]
    for name, samples in own:
        own_train, own_val = split_validation(samples, cfg.data.val_fraction)
        summary[name] = len(samples)
        train_parts.append(own_train)
        framing.append(np.full(len(own_train), LOOSE, dtype=np.int64))
        val_parts.append(to_input_size(own_val, size))

    if not train_parts:
        raise DatasetError(
            "no dataset enabled: set data.fer2013, data.utkface, data.aaf, data.lfw, data.manifests or"
            " data.emotion_folders / data.gender_folders"
        )
    train = concat(train_parts, size=canvas)
    val = concat([p for p in val_parts if len(p)], size=size)
    weights = class_weights(train.emotion, len(EMOTIONS), cfg.class_weight_power)
    log.info("data: %s", summary)
    return TrainingData(
        train=train,
        framing=np.concatenate(framing),
        val=val,
        emotion_class_weight=weights,
        summary=summary,
    )
