"""The human model card is generated from the card data, and the shipped one is exactly that."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.card import CARD_FILE, main

pytestmark = pytest.mark.training

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_the_shipped_model_card_is_what_the_generator_writes_from_the_card_data(tmp_path: Path) -> None:
    for card in ("facecast_int8.json", "facecast_int8_single.json"):
        shutil.copy(MODELS / card, tmp_path / card)
    assert main([str(tmp_path / "facecast_int8.json")]) == 0
    written = (tmp_path / CARD_FILE).read_text()
    assert (
        written == (MODELS / CARD_FILE).read_text()
    )  # regenerate: python -m training.card models/facecast_int8.json
    assert len(written.splitlines()) < 200
    for section in (
        "## How to feed it",
        "## Figures",
        "### Gender accuracy per group",
        "## Data and licences",
        "## Intended use",
        "## Out of scope",
        "## Limitations and biases",
    ):
        assert section in written
    assert "### Single-pass variant: `facecast_int8_single.tflite`" in written
    assert "| age | accuracy | male | female | n |" in written  # each sex by age, where the set has ages


def test_a_missing_or_broken_card_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing.json")]) == 2
    (tmp_path / "broken.json").write_text('{"input": {"height": 48}}')
    assert main([str(tmp_path / "broken.json")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "card not found" in errors[0] and "labels: required" in errors[1]
    assert not (tmp_path / CARD_FILE).exists()
