"""``facecast-train flag-labels`` on the shipped model and UTKFace's real validation faces."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.training_support import REPO, datasets_root, require_datasets, run_train_cli
from training.datasets import GENDERS, parse_utkface_name

MODEL = REPO / "models" / "facecast_int8.tflite"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_flagged_faces_are_confident_contradictions_most_confident_first(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="the agent extra is not installed")
    root = require_datasets()
    out95, out99 = tmp_path / "f95.csv", tmp_path / "f99.csv"
    for out, conf in ((out95, "0.95"), (out99, "0.99")):
        r = run_train_cli(
            "flag-labels",
            str(MODEL),
            "--split",
            "val",
            "--datasets",
            str(root),
            "--min-confidence",
            conf,
            "--out",
            str(out),
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(out95)
    assert rows, "the shipped model confidently contradicts some UTKFace validation labels"
    val = set((root / "utkface" / "splits" / "val.txt").read_text().split())
    conf = [float(r["confidence"]) for r in rows]
    assert conf == sorted(conf, reverse=True) and min(conf) >= 0.95
    for row in rows:
        assert row["file"] in val
        age, sex, _ = parse_utkface_name(row["file"])
        assert row["label"] == GENDERS[sex] and row["predicted"] != row["label"] and int(row["age"]) == age
    # a stricter threshold keeps a subset: every face above it and none below
    strict = {r["file"] for r in _rows(out99)}
    assert {r["file"] for r in rows if float(r["confidence"]) > 0.9901} <= strict
    assert strict <= {r["file"] for r in rows if float(r["confidence"]) >= 0.9899}


def test_flag_labels_bad_input_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"

    def flag(model: Path) -> str:
        r = run_train_cli(
            "flag-labels", str(model), "--datasets", str(datasets_root()), "--out", str(out), timeout=120
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert not out.exists()  # nothing written from a model that could not load
        return r.stderr.strip().splitlines()[-1]

    missing = tmp_path / "none.tflite"
    assert flag(missing) == f"facecast-train: error: model not found: {missing}"
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(MODEL.read_bytes()[:5000])
    last = flag(corrupt)
    assert last.startswith(f"facecast-train: error: model {corrupt} is not a usable TFLite model"), last
