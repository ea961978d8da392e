"""The All-Age-Faces and LFW loaders on real slices of ../shared/datasets, and their bad input."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.datasets import GENDERS, DatasetError, cap_per_person, load_aaf, load_lfw

pytestmark = pytest.mark.training


def _labels(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def test_aaf_split_labels_and_pixels(datasets: Path) -> None:
    aaf = datasets / "aaf"
    s = load_aaf(aaf, "test", limit=40)
    assert s.images.shape == (40, 96, 96) and s.images.dtype == np.uint8
    listed = (aaf / "splits" / "test.txt").read_text().split()[:40]
    assert s.names == listed
    labels = _labels(aaf / "labels.csv")
    for name, g, age in zip(s.names, s.gender, s.age, strict=True):
        assert GENDERS[g] == labels[name]["gender"] and age == int(labels[name]["age"])
    assert (s.emotion == -1).all()
    colour = cv2.imread(str(aaf / "images" / s.names[0]), cv2.IMREAD_COLOR)
    assert np.array_equal(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), s.images[0])  # the file's own pixels


def test_aaf_faces_labelled_both_ways_leave_training_only(datasets: Path) -> None:
    aaf = datasets / "aaf"
    with (aaf / "duplicates.csv").open(newline="") as fh:
        conflicting = {r["file"] for r in csv.DictReader(fh) if r["conflicting_gender_in_group"] == "1"}
    train_listed = set((aaf / "splits" / "train.txt").read_text().split())
    in_train = conflicting & train_listed
    assert in_train, "the shared AAF split has conflicting pairs in train"
    names = set(load_aaf(aaf, "train").names)
    assert not names & conflicting
    assert len(names) == len(train_listed) - len(in_train)


def test_lfw_is_split_by_person_and_capped_per_person(datasets: Path) -> None:
    lfw = datasets / "lfw"
    labels = _labels(lfw / "labels.csv")
    train = load_lfw(lfw, "train", per_person=10)
    test_people = {labels[f]["person"] for f in (lfw / "splits" / "test.txt").read_text().split()}
    per_person = Counter(labels[f]["person"] for f in train.names)
    assert max(per_person.values()) == 10  # Colin Powell alone has 236 in train
    assert not set(per_person) & test_people
    uncapped = (lfw / "splits" / "train.txt").read_text().split()
    assert len(train) == sum(min(n, 10) for n in Counter(labels[f]["person"] for f in uncapped).values())
    for name, g in zip(train.names[:200], train.gender[:200], strict=True):
        assert GENDERS[g] == labels[name]["gender"]
    assert train.images.shape[1:] == (90, 90)


def test_cap_per_person_keeps_the_first_files_of_each() -> None:
    files = ["b/b_2", "a/a_3", "a/a_1", "a/a_2", "b/b_1"]
    kept = cap_per_person(files, {f: f.split("/")[0] for f in files}, 2)
    assert kept == ["a/a_1", "a/a_2", "b/b_1", "b/b_2"]


def _copy_set(src: Path, dst: Path, n: int, split: str = "val") -> list[str]:
    names = (src / "splits" / f"{split}.txt").read_text().split()[:n]
    (dst / "splits").mkdir(parents=True)
    (dst / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    for name in names:
        (dst / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "images" / name, dst / "images" / name)
    shutil.copy(src / "labels.csv", dst / "labels.csv")
    return names


@pytest.mark.parametrize("which", ["aaf", "lfw"])
def test_bad_input_is_one_clear_error(datasets: Path, tmp_path: Path, which: str) -> None:
    load = load_aaf if which == "aaf" else load_lfw
    with pytest.raises(DatasetError, match="labels not found"):
        load(tmp_path / "nothing", "val")
    names = _copy_set(datasets / which, tmp_path / which, 5)
    assert len(load(tmp_path / which, "val")) == 5
    with pytest.raises(DatasetError, match="split file not found"):
        load(tmp_path / which, "test")
    (tmp_path / which / "images" / names[2]).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=f"unreadable image: .*{Path(names[2]).name}"):
        load(tmp_path / which, "val")
    rows = (tmp_path / which / "labels.csv").read_text().splitlines()
    body = [r for r in rows[1:] if not r.startswith(names[0] + ",")]
    (tmp_path / which / "labels.csv").write_text("\n".join([rows[0], *body]) + "\n")
    with pytest.raises(DatasetError, match=f"no label for {names[0]}"):
        load(tmp_path / which, "val")
    (tmp_path / which / "labels.csv").write_text("file,sex\nx.jpg,male\n")
    with pytest.raises(DatasetError, match="missing columns"):
        load(tmp_path / which, "val")


def test_gender_figures_by_age_give_each_sex(datasets: Path) -> None:
    """A set's gap between the sexes can sit in one age group, so each group reports both sexes."""
    from training.evaluate import gender_breakdown

    s = load_aaf(datasets / "aaf", "test")  # whole: its first few hundred faces hold no young boys
    assert s.age is not None
    girls = (s.age <= 12) & (s.gender == GENDERS.index("female"))
    assert girls.any() and ((s.age <= 12) & ~girls).any()  # the slice holds boys and girls
    pred = np.where(girls, GENDERS.index("male"), s.gender)  # every girl misread, nobody else
    out = gender_breakdown(s.gender, pred, s)
    assert out["per_age_group"]["0-12"]["per_sex"] == {"male": 1.0, "female": 0.0}
    others = [g["per_sex"] for k, g in out["per_age_group"].items() if k != "0-12"]
    assert others and all(set(r.values()) == {1.0} for r in others)
    women = int((s.gender == GENDERS.index("female")).sum())
    assert out["per_sex"]["female"] == round(1 - int(girls.sum()) / women, 4)
