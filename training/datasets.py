"""Dataset loaders: every source becomes the same ``Samples`` (uint8 grayscale + optional labels).

A sample may carry an emotion label, a gender label, or both; a missing label is ``-1`` and its head's
loss is masked out, so FER2013 (emotion only) and UTKFace (gender only) train one network together.
Images are kept at their native framing; the training side brings them to a common framing later
(see ``training.framing``).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.model_contract import EMOTIONS, GENDERS
from agent.preprocess import resize, to_gray

log = logging.getLogger(__name__)

# Aliases users' own datasets commonly use for the same classes.
_EMOTION_ALIASES = {
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
}
_GENDER_ALIASES = {"m": "male", "f": "female", "man": "male", "woman": "female", "0": "male", "1": "female"}
# FER+ vote columns, and which of our classes each maps to (contempt/unknown/NF have none).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")
_FERPLUS_TO_OURS = {
    column: EMOTIONS.index(_EMOTION_ALIASES.get(column, column)) for column in FERPLUS_COLUMNS
}
FERPLUS_MAP = "fer2013_to_ferplus_map.csv"  # in <datasets>/ferplus/: our FER2013 files -> FER+ votes
FERPLUS_OTHER_COLUMNS = ("contempt", "unknown", "NF")  # FER+ columns with no class of ours
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DatasetError(Exception):
    """A dataset that cannot be read as asked: the message says which file and why."""


@dataclass
class Samples:
    """Images and labels of one split. ``-1`` marks a missing label."""

    images: npt.NDArray[np.uint8]  # (N, S, S) grayscale, one common size per Samples
    emotion: npt.NDArray[np.int64]
    gender: npt.NDArray[np.int64]
    names: list[str]
    source: str
    emotion_soft: npt.NDArray[np.float32] | None = None  # (N, 7) FER+ vote distribution, if any
    age: npt.NDArray[np.int64] | None = None
    race: npt.NDArray[np.int64] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: Sequence[int] | npt.NDArray[np.int64]) -> Samples:
        idx = np.asarray(index, dtype=np.int64)
        return Samples(
            images=self.images[idx],
            emotion=self.emotion[idx],
            gender=self.gender[idx],
            names=[self.names[i] for i in idx],
            source=self.source,
            emotion_soft=None if self.emotion_soft is None else self.emotion_soft[idx],
            age=None if self.age is None else self.age[idx],
            race=None if self.race is None else self.race[idx],
            extra=dict(self.extra),
        )


def emotion_index(name: str) -> int:
    key = name.strip().lower()
    key = _EMOTION_ALIASES.get(key, key)
    if key not in EMOTIONS:
        raise DatasetError(f"unknown emotion class {name!r} (expected one of {', '.join(EMOTIONS)})")
    return EMOTIONS.index(key)


def gender_index(name: str) -> int:
    key = name.strip().lower()
    key = _GENDER_ALIASES.get(key, key)
    if key not in GENDERS:
        raise DatasetError(f"unknown gender {name!r} (expected male or female)")
    return GENDERS.index(key)


def read_gray(path: Path, size: int | None) -> npt.NDArray[np.uint8]:
    """Decode an image file as grayscale, optionally resized to ``size`` x ``size``."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise DatasetError(f"image not found: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DatasetError(f"unreadable image: {path}")
    gray = to_gray(np.asarray(image, dtype=np.uint8), bgr=True)
    return resize(gray, size, size) if size else gray


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}")


def _stack(images: list[npt.NDArray[np.uint8]], where: Path) -> npt.NDArray[np.uint8]:
    if not images:
        raise DatasetError(f"no images found under {where}")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DatasetError(f"images under {where} differ in size ({sorted(shapes)[:3]}...); pass a size")
    return np.stack(images).astype(np.uint8)


# --------------------------------------------------------------------------------------- FER2013
def load_fer2013_folder(
    root: Path,
    split: str,
    *,
    size: int | None = None,
    limit_per_class: int | None = None,
    exclude: Iterable[str] = (),
) -> Samples:
    """Kaggle image-folder layout: ``root/<split>/<class>/<id>.png``.

    ``exclude`` holds paths relative to ``root`` (as in ``quirks.csv``) to leave out.
    """
    base = root / split
    _require_dir(base, f"FER2013 {split}")
    skip = set(exclude)
    images: list[npt.NDArray[np.uint8]] = []
    labels: list[int] = []
    names: list[str] = []
    class_dirs = sorted(p for p in base.iterdir() if p.is_dir())
    if not class_dirs:
        raise DatasetError(f"no class folders under {base}")
    for class_dir in class_dirs:
        label = emotion_index(class_dir.name)
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        kept = 0
        for path in files:
            rel = f"{split}/{class_dir.name}/{path.name}"
            if rel in skip:
                continue
            if limit_per_class is not None and kept >= limit_per_class:
                break
            images.append(read_gray(path, size))
            labels.append(label)
            names.append(rel)
            kept += 1
    n = len(names)
    return Samples(
        images=_stack(images, base),
        emotion=np.asarray(labels, dtype=np.int64),
        gender=np.full(n, -1, dtype=np.int64),
        names=names,
        source="fer2013",
    )


_FER_CSV_HEADER = ("emotion", "pixels", "Usage")
_FER_CSV_USAGE = {"train": ("Training",), "test": ("PublicTest", "PrivateTest"), "val": ("PublicTest",)}


def load_fer2013_csv(path: Path, split: str, *, limit: int | None = None) -> Samples:
    """The original Kaggle ``fer2013.csv``: ``emotion,pixels,Usage`` (emotion 0-6 in FER order)."""
    if not path.is_file():
        raise DatasetError(f"FER2013 csv not found: {path}")
    if split not in _FER_CSV_USAGE and split not in ("PublicTest", "PrivateTest", "Training"):
        raise DatasetError(f"unknown split {split!r} for fer2013.csv (train, val, test or a Usage value)")
    usages = _FER_CSV_USAGE.get(split, (split,))
    images: list[npt.NDArray[np.uint8]] = []
    labels: list[int] = []
    names: list[str] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(h.strip() for h in next(reader, ()))
        if header[:3] != _FER_CSV_HEADER:
            raise DatasetError(f"{path}: header {','.join(header)!r} is not 'emotion,pixels,Usage'")
        for row_no, row in enumerate(reader):
            if len(row) < 3 or row[2].strip() not in usages:
                continue
            try:
                label = int(row[0])
                pixels = np.asarray(row[1].split(), dtype=np.uint8)
            except ValueError as exc:
                raise DatasetError(f"{path}: row {row_no + 2}: {exc}") from None
            if not 0 <= label < len(EMOTIONS) or pixels.size != 48 * 48:
                raise DatasetError(f"{path}: row {row_no + 2}: bad label or not 2304 pixels")
            images.append(pixels.reshape(48, 48))
            labels.append(label)
            names.append(f"{row[2].strip()}_{row_no}")
            if limit is not None and len(names) >= limit:
                break
    return Samples(
        images=_stack(images, path),
        emotion=np.asarray(labels, dtype=np.int64),
        gender=np.full(len(names), -1, dtype=np.int64),
        names=names,
        source="fer2013csv",
    )


def load_fer2013_quirks(root: Path) -> dict[str, list[str]]:
    """``quirks.csv`` as issue -> relative paths; duplicate groups as ``dup:<group>`` -> paths."""
    path = root / "quirks.csv"
    out: dict[str, list[str]] = {}
    if not path.is_file():
        return out
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            key = row["issue"] if not row.get("group") else f"dup:{row['group']}"
            out.setdefault(key, []).append(row["path"])
    return out


def fer2013_train_exclusions(root: Path) -> set[str]:
    """Train images to leave out: blank ones, and any pixel-duplicate of a test image (leakage)."""
    quirks = load_fer2013_quirks(root)
    excluded = {p for p in quirks.get("blank_or_near_constant", []) if p.startswith("train/")}
    for key, paths in quirks.items():
        if key.startswith("dup:") and any(p.startswith("test/") for p in paths):
            excluded.update(p for p in paths if p.startswith("train/"))
    return excluded


def fer2013_duplicate_groups(root: Path) -> dict[str, str]:
    """Relative path -> duplicate-group key, so a validation split keeps groups on one side."""
    return {
        p: key for key, paths in load_fer2013_quirks(root).items() if key.startswith("dup:") for p in paths
    }


# ------------------------------------------------------------------------------------------ FER+
def _ferplus_rows(map_csv: Path, columns: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """``(<split>/<class>/<file>, row)`` for each of our FER2013 images that FER+ kept, after
    checking the file and that its header has ``columns``."""
    if not map_csv.is_file():
        raise DatasetError(f"FER+ map not found: {map_csv}")
    with map_csv.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"split", "fer_class", "file", *columns} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{map_csv}: missing columns {sorted(missing)}")
        for row in reader:
            if row.get("ferplus_image"):
                yield f"{row['split']}/{row['fer_class']}/{row['file']}", row


def load_ferplus_votes(map_csv: Path) -> dict[str, npt.NDArray[np.float32]]:
    """FER+ votes keyed by our relative path ``<split>/<class>/<file>``, as a 7-class distribution.

    Votes for contempt/unknown/not-a-face are dropped; an image with no usable vote gets none.
    """
    out: dict[str, npt.NDArray[np.float32]] = {}
    for key, row in _ferplus_rows(map_csv, FERPLUS_COLUMNS):
        votes = np.zeros(len(EMOTIONS), dtype=np.float32)
        for col in FERPLUS_COLUMNS:
            votes[_FERPLUS_TO_OURS[col]] += float(row[col] or 0)
        if votes.sum() > 0:
            out[key] = votes / votes.sum()
    return out


def load_ferplus_plurality(map_csv: Path, split: str) -> dict[str, int]:
    """The FER+ crowd label of each image of ``split``: the most-voted of FER+'s ten columns, kept
    only where it is unique and one of our seven emotions (not contempt, unknown or not-a-face).

    Ten annotators per image make it a cleaner reference than FER2013's single label: scoring a
    model against both tells label noise apart from model error.
    """
    columns = (*FERPLUS_COLUMNS, *FERPLUS_OTHER_COLUMNS)
    out: dict[str, int] = {}
    for key, row in _ferplus_rows(map_csv, columns):
        if row["split"] != split:
            continue
        votes = np.array([float(row[c] or 0) for c in columns])
        top = votes.max()
        if top <= 0 or int((votes == top).sum()) > 1:
            continue
        winner = columns[int(votes.argmax())]
        if winner in _FERPLUS_TO_OURS:
            out[key] = _FERPLUS_TO_OURS[winner]
    return out


def attach_ferplus(samples: Samples, votes: dict[str, npt.NDArray[np.float32]]) -> int:
    """Add FER+ distributions to FER2013 samples (one-hot of the FER label where FER+ has none)."""
    soft = np.zeros((len(samples), len(EMOTIONS)), dtype=np.float32)
    found = 0
    for i, name in enumerate(samples.names):
        dist = votes.get(name)
        if dist is not None:
            soft[i] = dist
            found += 1
        elif samples.emotion[i] >= 0:
            soft[i, samples.emotion[i]] = 1.0
    samples.emotion_soft = soft
    return found


# --------------------------------------------------------------------------------------- UTKFace
def parse_utkface_name(name: str) -> tuple[int, int, int]:
    """``age_gender_race_date.jpg.chip.jpg`` -> (age, gender, race); race -1 where it is missing."""
    parts = name.split("_")
    try:
        age, gender = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise DatasetError(f"UTKFace file name {name!r} does not start with age_gender_") from None
    if gender not in (0, 1):
        raise DatasetError(f"UTKFace file name {name!r}: gender field must be 0 or 1")
    race = -1
    if len(parts) >= 4:
        try:
            race = int(parts[2])
        except ValueError:
            race = -1
    return age, gender, race


def utkface_split_names(root: Path, split: str) -> list[str]:
    """File names of one split of the fixed UTKFace split, or of every image for ``split='all'``."""
    image_dir = root / "images"
    _require_dir(image_dir, "UTKFace images")
    if split == "all":
        return sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    split_file = root / "splits" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"UTKFace split file not found: {split_file}")
    return [ln.rstrip("\n") for ln in split_file.read_text().splitlines() if ln.strip()]


def utkface_conflicting_gender(root: Path) -> set[str]:
    """Files whose byte-identical copies carry the other gender label (``duplicates.csv``).

    One label of each such group is wrong and nothing tells which, so training leaves the whole group
    out rather than learn both answers for one face. A copy of UTKFace without the file has none.
    """
    path = root / "duplicates.csv"
    if not path.is_file():
        return set()
    with path.open(newline="") as fh:
        return {row["file"] for row in csv.DictReader(fh) if row.get("conflicting_gender_in_group") == "1"}


def load_utkface(
    root: Path,
    split: str,
    *,
    size: int | None = None,
    limit: int | None = None,
    exclude: Collection[str] = (),
) -> Samples:
    """UTKFace images listed in ``root/splits/<split>.txt`` (or every image for ``split='all'``)."""
    image_dir = root / "images"
    files = utkface_split_names(root, split)
    if exclude:
        files = [name for name in files if name not in exclude]
    if limit is not None:
        files = files[:limit]
    images, genders, ages, races = [], [], [], []
    for name in files:
        age, gender, race = parse_utkface_name(name)
        images.append(read_gray(image_dir / name, size))
        genders.append(gender)
        ages.append(age)
        races.append(race)
    n = len(files)
    return Samples(
        images=_stack(images, image_dir),
        emotion=np.full(n, -1, dtype=np.int64),
        gender=np.asarray(genders, dtype=np.int64),
        names=files,
        source="utkface",
        age=np.asarray(ages, dtype=np.int64),
        race=np.asarray(races, dtype=np.int64),
    )


# ------------------------------------------------------------------------------- AAF and LFW
def _labels_csv(root: Path, columns: Collection[str], what: str) -> dict[str, dict[str, str]]:
    """``labels.csv`` keyed by its ``file`` column, after checking it names ``columns``."""
    path = root / "labels.csv"
    if not path.is_file():
        raise DatasetError(f"{what} labels not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", *columns} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: missing columns {sorted(missing)}")
        return {row["file"]: row for row in reader}


def _split_names(root: Path, split: str, what: str) -> list[str]:
    split_file = root / "splits" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"{what} split file not found: {split_file}")
    return [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]


def _conflicting_gender(root: Path) -> set[str]:
    """Files of a byte-identical group whose copies carry both genders (``duplicates.csv``)."""
    path = root / "duplicates.csv"
    if not path.is_file():
        return set()
    with path.open(newline="") as fh:
        return {row["file"] for row in csv.DictReader(fh) if row.get("conflicting_gender_in_group") == "1"}


def _gender_set(
    root: Path, files: Sequence[str], labels: dict[str, dict[str, str]], source: str, what: str
) -> Samples:
    image_dir = root / "images"
    _require_dir(image_dir, f"{what} images")
    images, genders, ages = [], [], []
    for name in files:
        row = labels.get(name)
        if row is None:
            raise DatasetError(f"{root / 'labels.csv'}: no label for {name} (listed in a split)")
        try:
            genders.append(gender_index(row["gender"]))
        except DatasetError as exc:
            raise DatasetError(f"{root / 'labels.csv'}: {name}: {exc}") from None
        age = row.get("age", "")
        ages.append(int(age) if age and age.strip().isdigit() else -1)
        images.append(read_gray(image_dir / name, None))
    n = len(files)
    return Samples(
        images=_stack(images, image_dir),
        emotion=np.full(n, -1, dtype=np.int64),
        gender=np.asarray(genders, dtype=np.int64),
        names=list(files),
        source=source,
        age=np.asarray(ages, dtype=np.int64),
    )


def load_aaf(root: Path, split: str, *, limit: int | None = None, train_clean: bool = True) -> Samples:
    """All-Age-Faces: ``images/<file>``, ``labels.csv`` (file, gender, age), ``splits/<split>.txt``.

    In the training split the two duplicate groups labelled both ways are left out (``train_clean``):
    nothing tells which label is right, and validation and test keep them, as for UTKFace."""
    labels = _labels_csv(root, ("gender", "age"), "AAF")
    files = _split_names(root, split, "AAF")
    if split == "train" and train_clean:
        bad = _conflicting_gender(root)
        files = [f for f in files if f not in bad]
    return _gender_set(root, files[:limit] if limit is not None else files, labels, "aaf", "AAF")


def cap_per_person(files: Sequence[str], person: dict[str, str], cap: int) -> list[str]:
    """At most ``cap`` images of each person, taken in file-name order (so the same ones each run).

    LFW holds 530 images of one man and one of most people: uncapped, a handful of public figures
    would be a fifth of its gender labels and the head would learn their faces, not faces."""
    seen: dict[str, int] = {}
    kept = []
    for f in sorted(files):
        who = person[f]
        if seen.get(who, 0) < cap:
            seen[who] = seen.get(who, 0) + 1
            kept.append(f)
    return kept


def load_lfw(root: Path, split: str, *, per_person: int | None = None, limit: int | None = None) -> Samples:
    """LFW with its gender lists: ``images/<Person>/<Person>_NNNN.jpg``, ``labels.csv`` (file, person,
    gender), ``splits/<split>.txt`` split by person. ``per_person`` caps each person's images."""
    labels = _labels_csv(root, ("person", "gender"), "LFW")
    files = _split_names(root, split, "LFW")
    if per_person is not None:
        unknown = [f for f in files if f not in labels]
        if unknown:
            raise DatasetError(f"{root / 'labels.csv'}: no label for {unknown[0]} (listed in a split)")
        files = cap_per_person(files, {f: labels[f]["person"] for f in files}, per_person)
    return _gender_set(root, files[:limit] if limit is not None else files, labels, "lfw", "LFW")


# ------------------------------------------------------------------------------ user's own data
MANIFEST_HEADER = ("path", "emotion", "gender")


def load_manifest(path: Path, *, size: int) -> Samples:
    """A CSV manifest ``path,emotion,gender`` (either label may be empty; paths relative to the CSV)."""
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    images, emotions, genders, names = [], [], [], []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(h.strip().lower() for h in next(reader, ()))
        if header[:3] != MANIFEST_HEADER:
            raise DatasetError(f"{path}: header {','.join(header)!r} is not 'path,emotion,gender'")
        for line_no, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            cells = [*row, "", ""][:3]
            emo = cells[1].strip()
            gen = cells[2].strip()
            if not emo and not gen:
                raise DatasetError(f"{path}: line {line_no}: neither emotion nor gender is given")
            try:
                e = emotion_index(emo) if emo else -1
                g = gender_index(gen) if gen else -1
            except DatasetError as exc:
                raise DatasetError(f"{path}: line {line_no}: {exc}") from None
            image_path = (path.parent / cells[0].strip()).resolve()
            images.append(read_gray(image_path, size))
            emotions.append(e)
            genders.append(g)
            names.append(cells[0].strip())
    return Samples(
        images=_stack(images, path),
        emotion=np.asarray(emotions, dtype=np.int64),
        gender=np.asarray(genders, dtype=np.int64),
        names=names,
        source="manifest",
    )


def load_labelled_folder(root: Path, *, size: int, head: str = "emotion") -> Samples:
    """A plain ``root/<label>/*.jpg`` folder, where label names an emotion or a gender (per ``head``)."""
    _require_dir(root, "labelled")
    if head not in ("emotion", "gender"):
        raise DatasetError(f"head must be emotion or gender, not {head!r}")
    images, labels, names = [], [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = emotion_index(class_dir.name) if head == "emotion" else gender_index(class_dir.name)
        for p in sorted(class_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                images.append(read_gray(p, size))
                labels.append(label)
                names.append(f"{class_dir.name}/{p.name}")
    n = len(names)
    lab = np.asarray(labels, dtype=np.int64)
    none = np.full(n, -1, dtype=np.int64)
    return Samples(
        images=_stack(images, root),
        emotion=lab if head == "emotion" else none,
        gender=lab if head == "gender" else none,
        names=names,
        source="folder",
    )


# ---------------------------------------------------------------------------------------- splits
def stable_bucket(key: str, buckets: int) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % buckets


def split_validation(
    samples: Samples, fraction: float, groups: dict[str, str] | None = None
) -> tuple[Samples, Samples]:
    """Deterministic hash split; samples of one duplicate group always land on the same side."""
    groups = groups or {}
    per_mille = round(fraction * 1000)
    val_idx: list[int] = []
    train_idx: list[int] = []
    for i, name in enumerate(samples.names):
        key = groups.get(name, name)
        (val_idx if stable_bucket(key, 1000) < per_mille else train_idx).append(i)
    return samples.subset(train_idx), samples.subset(val_idx)


def onehot(labels: npt.NDArray[np.int64], n_classes: int) -> npt.NDArray[np.float32]:
    """One-hot rows, all zeros where a label is missing (-1): that head's loss weight is 0 there."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    has = labels >= 0
    out[np.flatnonzero(has), labels[has]] = 1.0
    return out


def concat(parts: Sequence[Samples], *, size: int) -> Samples:
    """Join samples from several sources at one image size, each resized as the protocol resizes.

    Every part's emotion target becomes soft: its FER+ blend where it has one, else the label's
    one-hot."""
    images, emo, gen, names, soft_e = [], [], [], [], []
    for part in parts:
        imgs = part.images
        if imgs.shape[1:] != (size, size):
            imgs = np.stack([resize(im, size, size) for im in imgs])
        images.append(imgs)
        emo.append(part.emotion)
        gen.append(part.gender)
        names.extend(part.names)
        own = part.emotion_soft
        soft_e.append(own if own is not None else onehot(part.emotion, len(EMOTIONS)))
    return Samples(
        images=np.concatenate(images).astype(np.uint8),
        emotion=np.concatenate(emo),
        gender=np.concatenate(gen),
        names=names,
        source="+".join(p.source for p in parts),
        emotion_soft=np.concatenate(soft_e).astype(np.float32),
    )
