"""Dataset loaders on real slices of ../shared/datasets, and their errors on bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.model_contract import EMOTIONS, GENDERS
from training.datasets import (
    DatasetError,
    attach_ferplus,
    concat,
    fer2013_duplicate_groups,
    fer2013_train_exclusions,
    load_fer2013_csv,
    load_fer2013_folder,
    load_ferplus_plurality,
    load_ferplus_votes,
    load_labelled_folder,
    load_manifest,
    load_utkface,
    parse_utkface_name,
    split_validation,
    utkface_conflicting_gender,
    utkface_split_names,
)

pytestmark = pytest.mark.training


def test_fer2013_folder_slice_labels_follow_folders(datasets: Path) -> None:
    s = load_fer2013_folder(datasets / "fer2013", "test", limit_per_class=5)
    assert s.images.shape == (35, 48, 48) and s.images.dtype == np.uint8
    assert (s.gender == -1).all()
    for name, label in zip(s.names, s.emotion, strict=True):
        assert name.split("/")[1] == EMOTIONS[label]
    # The loader returns the file's pixels unchanged (PNG is lossless).
    first = cv2.imread(str(datasets / "fer2013" / s.names[0]), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(first, s.images[0])


def test_fer2013_exclusions_drop_blank_and_test_duplicates(datasets: Path) -> None:
    excluded = fer2013_train_exclusions(datasets / "fer2013")
    assert excluded and all(p.startswith("train/") for p in excluded)
    groups = fer2013_duplicate_groups(datasets / "fer2013")
    # every excluded duplicate shares a group with some test image
    test_groups = {g for p, g in groups.items() if p.startswith("test/")}
    dup_excluded = [p for p in excluded if p in groups]
    assert dup_excluded and all(groups[p] in test_groups for p in dup_excluded)
    s = load_fer2013_folder(datasets / "fer2013", "train", limit_per_class=400, exclude=excluded)
    assert not set(s.names) & excluded


def test_fer2013_csv_matches_folder_pixels(datasets: Path, tmp_path: Path) -> None:
    folder = load_fer2013_folder(datasets / "fer2013", "test", limit_per_class=2)
    csv_path = tmp_path / "fer2013.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for img, label, name in zip(folder.images, folder.emotion, folder.names, strict=True):
            usage = "PublicTest" if "PublicTest" in name else "PrivateTest"
            w.writerow([int(label), " ".join(str(int(v)) for v in img.reshape(-1)), usage])
        w.writerow([3, " ".join(["0"] * 2304), "Training"])
    s = load_fer2013_csv(csv_path, "test")
    assert np.array_equal(s.images, folder.images)
    assert np.array_equal(s.emotion, folder.emotion)
    assert len(load_fer2013_csv(csv_path, "train")) == 1


def test_fer2013_csv_with_wrong_header_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("label,pixels,usage\n0,1 2 3,Training\n")
    with pytest.raises(DatasetError, match="header"):
        load_fer2013_csv(bad, "train")


def test_ferplus_votes_are_distributions_attached_by_path(datasets: Path) -> None:
    votes = load_ferplus_votes(datasets / "ferplus" / "fer2013_to_ferplus_map.csv")
    assert len(votes) > 35_000
    s = load_fer2013_folder(datasets / "fer2013", "test", limit_per_class=10)
    found = attach_ferplus(s, votes)
    assert found >= 60
    assert s.emotion_soft is not None
    assert np.allclose(s.emotion_soft.sum(axis=1), 1.0, atol=1e-5)
    # FER+ annotators mostly agree with FER2013 on happy faces.
    happy = s.emotion == EMOTIONS.index("happy")
    assert (s.emotion_soft[happy].argmax(1) == EMOTIONS.index("happy")).mean() >= 0.7


def test_ferplus_crowd_label_is_a_unique_top_vote_among_our_classes(datasets: Path) -> None:
    crowd = load_ferplus_plurality(datasets / "ferplus" / "fer2013_to_ferplus_map.csv", "test")
    # anger 9 of 10 votes -> angry; anger 4 vs neutral 2 -> angry although FER2013 says angry too
    assert crowd["test/angry/PrivateTest_10304478.png"] == EMOTIONS.index("angry")
    assert crowd["test/angry/PrivateTest_10131363.png"] == EMOTIONS.index("angry")
    # left out: a tie on top (surprise 3 = anger 3), contempt on top, not-a-face on top
    for name in ("PrivateTest_21230097.png", "PrivateTest_1623042.png"):
        assert f"test/angry/{name}" not in crowd
    assert "test/fear/PublicTest_58756471.png" not in crowd
    assert all(key.startswith("test/") for key in crowd) and 6_000 < len(crowd) < 7_178
    # the crowd relabels FER2013: a real share of test images moves to another class
    moved = sum(EMOTIONS[label] != key.split("/")[1] for key, label in crowd.items())
    assert 0.2 < moved / len(crowd) < 0.5


def test_utkface_split_labels_come_from_file_names(datasets: Path) -> None:
    s = load_utkface(datasets / "utkface", "test", limit=40)
    assert s.images.shape == (40, 96, 96)
    assert (s.emotion == -1).all()
    assert s.age is not None and s.race is not None
    for name, g, a in zip(s.names, s.gender, s.age, strict=True):
        assert name.startswith(f"{a}_{g}_")
    test_names = set((datasets / "utkface" / "splits" / "test.txt").read_text().split("\n"))
    train = load_utkface(datasets / "utkface", "train", limit=200)
    assert not test_names & set(train.names)


def test_utkface_faces_labelled_both_ways_leave_training(datasets: Path, tmp_path: Path) -> None:
    utk = datasets / "utkface"
    conflicting = utkface_conflicting_gender(utk)
    groups: dict[str, set[str]] = {}
    with (utk / "duplicates.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["file"] in conflicting:
                groups.setdefault(row["group"], set()).add(row["file"])
    # each group is one image under both labels: identical bytes, opposite gender fields
    for files in groups.values():
        assert len({(utk / "images" / f).read_bytes() for f in files}) == 1
        assert {parse_utkface_name(f)[1] for f in files} == {0, 1}
    train_names = utkface_split_names(utk, "train")
    first = next(i for i, name in enumerate(train_names) if name in conflicting)
    kept = load_utkface(utk, "train", limit=first + 1, exclude=conflicting)
    assert len(kept) == first + 1 and not conflicting & set(kept.names)
    assert train_names[first] in load_utkface(utk, "train", limit=first + 1).names
    # a copy of UTKFace without duplicates.csv excludes nothing
    assert utkface_conflicting_gender(tmp_path) == set()


def test_utkface_odd_names_parse() -> None:
    assert parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") == (39, 1, -1)
    assert parse_utkface_name("24_0_1_20170116220224657 .jpg.chip.jpg") == (24, 0, 1)
    with pytest.raises(DatasetError):
        parse_utkface_name("x_0_1_2.jpg")


def test_missing_dataset_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_fer2013_folder(tmp_path / "nope", "train")
    with pytest.raises(DatasetError, match="not found"):
        load_utkface(tmp_path / "nope", "train")


def _write_faces(datasets: Path, dest: Path, n: int) -> list[str]:
    src = load_fer2013_folder(datasets / "fer2013", "test", limit_per_class=1)
    names = []
    for i in range(n):
        name = f"face{i}.png"
        cv2.imwrite(str(dest / name), src.images[i % len(src)])
        names.append(name)
    return names


def test_manifest_with_partial_labels(datasets: Path, tmp_path: Path) -> None:
    names = _write_faces(datasets, tmp_path, 3)
    m = tmp_path / "labels.csv"
    m.write_text(f"path,emotion,gender\n{names[0]},happy,\n{names[1]},,female\n{names[2]},Surprised,m\n")
    s = load_manifest(m, size=64)
    assert s.images.shape == (3, 64, 64)
    assert s.emotion.tolist() == [EMOTIONS.index("happy"), -1, EMOTIONS.index("surprise")]
    assert s.gender.tolist() == [-1, 1, 0]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("file,label\nx.png,happy\n", "header"),
        ("path,emotion,gender\n{n},elated,\n", "unknown emotion class 'elated'"),
        ("path,emotion,gender\nmissing.png,happy,\n", "image not found"),
        ("path,emotion,gender\nbroken.png,happy,\n", "unreadable image"),
    ],
)
def test_manifest_bad_input(datasets: Path, tmp_path: Path, body: str, match: str) -> None:
    names = _write_faces(datasets, tmp_path, 1)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    m = tmp_path / "labels.csv"
    m.write_text(body.format(n=names[0]))
    with pytest.raises(DatasetError, match=match):
        load_manifest(m, size=48)


def test_labelled_folder_and_unknown_class(datasets: Path, tmp_path: Path) -> None:
    (tmp_path / "happy").mkdir()
    (tmp_path / "sad").mkdir()
    _write_faces(datasets, tmp_path / "happy", 2)
    _write_faces(datasets, tmp_path / "sad", 1)
    s = load_labelled_folder(tmp_path, size=48)
    assert s.emotion.tolist() == [3, 3, 4]
    (tmp_path / "bored").mkdir()
    with pytest.raises(DatasetError, match="bored"):
        load_labelled_folder(tmp_path, size=48)


def test_validation_split_keeps_duplicate_groups_together(datasets: Path) -> None:
    s = load_fer2013_folder(datasets / "fer2013", "train", limit_per_class=300)
    groups = fer2013_duplicate_groups(datasets / "fer2013")
    train, val = split_validation(s, 0.2, groups)
    assert len(train) + len(val) == len(s)
    assert 0.1 < len(val) / len(s) < 0.3
    g_train = {groups[n] for n in train.names if n in groups}
    g_val = {groups[n] for n in val.names if n in groups}
    assert not g_train & g_val
    again, _ = split_validation(s, 0.2, groups)
    assert again.names == train.names  # deterministic


def test_concat_brings_sources_to_one_size(datasets: Path) -> None:
    fer = load_fer2013_folder(datasets / "fer2013", "test", limit_per_class=1)
    utk = load_utkface(datasets / "utkface", "val", limit=5)
    both = concat([fer, utk], size=64)
    assert both.images.shape == (12, 64, 64)
    assert both.emotion_soft is not None
    assert both.emotion_soft[:7].sum() == 7 and both.emotion_soft[7:].sum() == 0
    assert (both.gender[:7] == -1).all() and (both.gender[7:] >= 0).all()


def test_your_own_folders_and_csv_train_through_the_config(datasets: Path, tmp_path: Path) -> None:
    """Every source of your own data, named in a config file by paths relative to it, and nothing else."""
    from training.config import load_config
    from training.training_data import LOOSE, build_training_data

    mine = tmp_path / "mine"
    for folder in ("emotions/happy", "emotions/sad", "genders/female", "genders/male"):
        (mine / folder).mkdir(parents=True)
        _write_faces(datasets, mine / folder, 10)
    names = _write_faces(datasets, mine, 10)
    (mine / "labels.csv").write_text("path,emotion,gender\n" + "".join(f"{n},angry,m\n" for n in names))
    config = tmp_path / "configs" / "mine.yaml"
    config.parent.mkdir()
    config.write_text(
        "data:\n"
        f"  root: {datasets}\n"
        "  fer2013: false\n  utkface: false\n  aaf: false\n  lfw: false\n"
        "  val_fraction: 0.3\n"
        "  manifests: [../mine/labels.csv]\n"
        "  emotion_folders: [../mine/emotions]\n"
        "  gender_folders: [../mine/genders]\n"
    )
    data = build_training_data(load_config(config))
    assert data.summary == {
        "manifest:labels.csv": 10,
        "emotion_folder:emotions": 20,
        "gender_folder:genders": 20,
    }
    assert len(data.train) + len(data.val) == 50 and 0 < len(data.val) < 25
    assert data.train.images.shape[1:] == (64, 64) and data.val.images.shape[1:] == (48, 48)
    assert (data.framing == LOOSE).all()
    t = data.train
    for name, emotion, gender in zip(t.names, t.emotion, t.gender, strict=True):
        folder = name.split("/")[0] if "/" in name else None
        if folder in ("happy", "sad"):  # an emotion folder labels emotion only
            assert (EMOTIONS[emotion], gender) == (folder, -1)
        elif folder in ("female", "male"):
            assert (emotion, GENDERS[gender]) == (-1, folder)
        else:  # the CSV gives both
            assert (EMOTIONS[emotion], GENDERS[gender]) == ("angry", "male")
