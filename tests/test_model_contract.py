"""The model contract: one definition of the labels, the card and the checks, on the shipped files."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from agent.classifier import default_model_path
from agent.errors import ModelError
from agent.model_contract import EMOTIONS, GENDERS, ModelCard, card_path_for, check_signature, read_card
from agent.runtime import load_interpreter

REPO = Path(__file__).resolve().parents[1]
SHIPPED = (default_model_path(), default_model_path(single_pass=True))


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_card_reads_and_writes_back_byte_for_byte(model: Path) -> None:
    """The exporter writes what the agent reads: the shipped cards are exactly ModelCard's output."""
    text = card_path_for(model).read_text()
    card = ModelCard.from_json(text)
    assert card.to_json() == text
    assert card.labels.emotion == EMOTIONS and card.labels.gender == GENDERS
    assert card.file is not None and card.file.name == model.name and card.file.bytes == model.stat().st_size


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_model_meets_its_card(model: Path) -> None:
    card = read_card(card_path_for(model))
    size = (card.input.height, card.input.width)
    signature = check_signature(load_interpreter(model), model.name, input_size=size, labels=card.labels)
    assert signature.input_shape == (1, *size, 1)
    assert card.input.quantization is not None
    assert signature.input_quantization == (card.input.quantization.scale, card.input.quantization.zero_point)
    assert set(signature.output_quantization) == {"emotion", "gender"}


def test_a_model_that_breaks_the_contract_is_a_one_line_error_naming_it() -> None:
    from agent.detectors.blazeface import bundled_model_path

    detector = bundled_model_path()  # a TFLite model, but no facecast one: it has no signature
    no_signature = rf"^model {re.escape(detector.name)}: expected exactly one signature, found 0$"
    with pytest.raises(ModelError, match=no_signature):
        check_signature(load_interpreter(detector), detector.name)
    shipped = load_interpreter(SHIPPED[0])
    wrong_size = r"input shape \[1, 48, 48, 1\] does not match the expected \[1, 64, 64, 1\]$"
    with pytest.raises(ModelError, match=wrong_size):
        check_signature(shipped, SHIPPED[0].name, input_size=(64, 64))


def test_a_card_left_without_optional_fields_writes_only_what_it_has(tmp_path: Path) -> None:
    card = read_card(card_path_for(SHIPPED[0]))
    bare = dataclasses.replace(card, file=None, version=None, metrics={}, training={})
    written = json.loads(bare.to_json())
    assert "file" not in written and "version" not in written and written["metrics"] == {}
    (tmp_path / "m.json").write_text(bare.to_json())
    assert read_card(tmp_path / "m.json") == bare


def test_the_label_lists_are_written_once() -> None:
    """Python imports them from agent.model_contract; what cannot import them (the event schemas, the
    dashboard's script) must name the same labels."""
    listed = re.compile(r"""["']angry["'],\s*["']disgust["']""")
    sources = [*REPO.glob("agent/**/*.py"), *REPO.glob("training/**/*.py"), *REPO.glob("tests/*.py")]
    defining = sorted(str(p.relative_to(REPO)) for p in sources if listed.search(p.read_text()))
    assert defining == ["agent/model_contract.py"]
    for schema in sorted((REPO / "agent" / "schema").glob("*.json")):
        for enum in re.findall(r'"enum": (\[[^\]]*"angry"[^\]]*\])', schema.read_text()):
            assert sorted(json.loads(enum)) == sorted(EMOTIONS), schema.name
    script = (REPO / "agent" / "dashboard" / "static" / "app.js").read_text()
    (js,) = re.findall(r"const EMOTIONS = (\[[^\]]*\]);", script)
    assert sorted(json.loads(js)) == sorted(EMOTIONS)
