"""The single-pass variant of the shipped model: derived from its int8 graph, shipped, selectable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.classifier import SINGLE_PASS_FILENAME, default_model_path, load_classifier
from agent.config import load_config
from agent.errors import ConfigError
from tests.agent_support import astronaut_bgr, read_frames, run_cli

SHIPPED = default_model_path()
VARIANT = default_model_path(single_pass=True)


def _runner(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    details = runner.get_output_details()

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        out = runner(image=x)
        return {
            k: (out[k].astype(np.float32) - details[k]["quantization"][1]) * details[k]["quantization"][0]
            for k in ("emotion", "gender")
        }

    return run


def _faces() -> np.ndarray:
    """48x48 int8 inputs from real frames: face regions of the dataset clips and the astronaut."""
    import cv2

    images = [cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)[40:240, 130:330]]
    for frame in read_frames("news_interview_portrait", [0, 300, 600, 900]):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        images += [gray[100:400, 30:330], gray[50:250, 80:280]]
    small = np.stack([cv2.resize(i, (48, 48), interpolation=cv2.INTER_AREA) for i in images])
    return (small.astype(np.int16) - 128).astype(np.int8)[..., None]


def test_the_shipped_variant_is_what_the_tool_derives_from_the_shipped_model(tmp_path):
    from training.single_pass import write_single_pass

    derived = write_single_pass(SHIPPED, tmp_path / SINGLE_PASS_FILENAME)
    assert derived.read_bytes() == VARIANT.read_bytes()
    card = json.loads(VARIANT.with_suffix(".json").read_text())
    assert card["flip_tta"] is False and card["file"] == {
        "name": VARIANT.name,
        "bytes": VARIANT.stat().st_size,
    }
    assert card["derived_from"]["file"] == SHIPPED.name
    emotion = card["metrics"]["int8"]["fer2013_test"]["emotion"]
    assert (
        emotion["n"] == 7178
        and 0.5 < emotion["accuracy"] < card["metrics"]["source_int8_headline"]["fer2013_test_emotion"]
    )


def test_the_variant_computes_the_one_pass_that_the_shipped_model_averages():
    """Mirror averaging = mean of the single pass on the face and on its mirror image. The gender
    head's balance offset re-weights the average, so emotion is the exact check here."""
    x = _faces()
    averaged, single = _runner(SHIPPED), _runner(VARIANT)
    both = averaged(x)
    one, mirrored = single(x), single(np.ascontiguousarray(x[:, :, ::-1]))
    assert np.abs(both["emotion"] - (one["emotion"] + mirrored["emotion"]) / 2).max() <= 1 / 256
    # and it is a different function: the single pass alone disagrees somewhere
    assert np.abs(both["emotion"] - one["emotion"]).max() > 4 / 256
    assert np.allclose(one["gender"].sum(axis=1), 1.0, atol=0.02)


def test_a_model_without_mirror_averaging_is_refused(tmp_path):
    from training.errors import ExportError
    from training.single_pass import write_single_pass

    with pytest.raises(ExportError, match="REVERSE_V2"):
        write_single_pass(VARIANT, tmp_path / "again.tflite")


def test_the_agent_picks_the_variant_with_single_pass_true(tmp_path, caplog):
    config = load_config(None, environ={}, overrides={"model.single_pass": True})
    from agent.app import build_classifier

    classifier = build_classifier(config)
    assert classifier.model_path == VARIANT
    attrs = classifier.classify(astronaut_bgr(), [(170, 60, 120, 140)])
    assert attrs[0].emotion in classifier.card.labels.emotion
    with pytest.raises(ConfigError, match=r"model\.single_pass .*: true selects the shipped single-pass"):
        load_config(None, environ={}, overrides={"model.single_pass": True, "model.path": str(SHIPPED)})
    assert load_classifier().model_path == SHIPPED
    assert build_classifier(load_config(None, environ={})).model_path == SHIPPED
    assert not caplog.records, "the new key (or none) must not warn"


@pytest.mark.parametrize(("old", "single_pass"), [(False, True), (True, False)])
def test_the_old_flip_tta_key_still_works_with_one_deprecation_warning(old, single_pass, caplog):
    config = load_config(None, environ={"FACECAST_MODEL__FLIP_TTA": str(old).lower()})
    assert config.model.single_pass is single_pass
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "model.single_pass" in warnings[0].getMessage(), caplog.text
    assert "deprecated" in warnings[0].getMessage()


def test_flip_tta_cannot_contradict_single_pass():
    with pytest.raises(ConfigError, match=r"model\.flip_tta .*: true contradicts single_pass: true"):
        load_config(None, environ={}, overrides={"model.single_pass": True, "model.flip_tta": True})


def test_config_check_with_flip_tta_false_says_single_pass_on_one_stderr_line(tmp_path):
    """What a user upgrading with an old config file sees: the run goes on, on the variant, and
    stderr carries one line naming the key to write instead."""
    path = tmp_path / "facecast.yaml"
    path.write_text("model:\n  flip_tta: false\n")
    proc = run_cli("config", "check", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "single_pass: true" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "flip_tta" in line]
    assert len(lines) == 1 and "deprecated" in lines[0] and "model.single_pass: true" in lines[0], proc.stderr
