"""The emotion/gender classifier against the model contract: validation, quantization, batching."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agent import preprocess
from agent.classifier import FaceClassifier, load_classifier
from agent.detectors.base import Detection
from agent.errors import ModelError
from agent.model_contract import read_card
from agent.pipeline import to_pixel_box
from tests.agent_support import astronaut_bgr


@pytest.fixture
def model_copy(tmp_path, model_path):
    """A private copy of model + card that a test may break."""
    dst = tmp_path / "m.tflite"
    shutil.copy(model_path, dst)
    shutil.copy(model_path.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _edit_card(path, edit):
    card = json.loads(path.with_suffix(".json").read_text())
    edit(card)
    path.with_suffix(".json").write_text(json.dumps(card))


def test_loads_and_reports_card_parameters(model_path):
    clf = load_classifier(model_path)
    card = read_card(model_path.with_suffix(".json"))
    assert clf.input_size == (card.input.height, card.input.width)
    assert clf.crop_margin == card.crop.margin
    assert len(card.labels.emotion) == 7
    assert set(card.labels.gender) == {"male", "female"}


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_classifier(tmp_path / "facecast_int8.tflite")


def test_missing_card(model_copy):
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="card not found"):
        load_classifier(model_copy)


def test_corrupt_model_bytes(model_copy):
    model_copy.write_bytes(b"garbage" * 100)
    with pytest.raises(ModelError) as err:
        load_classifier(model_copy)
    assert "\n" not in str(err.value)


def test_card_not_json(model_copy):
    model_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_classifier(model_copy)


def test_card_with_wrong_label_count(model_copy):
    _edit_card(model_copy, lambda c: c["labels"].update(emotion=c["labels"]["emotion"][:6]))
    with pytest.raises(ModelError, match=r"labels\.emotion"):
        load_classifier(model_copy)


def test_card_with_wrong_input_size(model_copy):
    _edit_card(model_copy, lambda c: c["input"].update(height=c["input"]["height"] + 16))
    with pytest.raises(ModelError, match="input shape"):
        load_classifier(model_copy)


def test_card_with_three_channels(model_copy):
    _edit_card(model_copy, lambda c: c["input"].update(channels=3))
    with pytest.raises(ModelError, match="channels"):
        load_classifier(model_copy)


def test_detector_model_is_not_a_classifier(tmp_path):
    """A valid TFLite file with the wrong contract (BlazeFace: float input, other outputs)."""
    from agent.detectors.blazeface import bundled_model_path

    dst = tmp_path / "blazeface.tflite"
    shutil.copy(bundled_model_path(), dst)
    dst.with_suffix(".json").write_text(
        json.dumps(
            {
                "input": {"height": 128, "width": 128, "channels": 1, "range": [0, 1]},
                "labels": {"emotion": list("abcdefg"), "gender": ["male", "female"]},
            }
        )
    )
    with pytest.raises(ModelError) as err:
        load_classifier(dst)
    assert "blazeface.tflite" in str(err.value)


def _face(image):
    """The astronaut's face region (found by BlazeFace in the detector tests)."""
    return (178.0, 81.0, 94.0, 94.0)


def test_prepare_quantizes_with_the_models_own_parameters(model_path):
    clf = load_classifier(model_path)
    img = astronaut_bgr()
    batch = clf.prepare(img, [_face(img)])
    h, w = clf.input_size
    assert batch.shape == (1, h, w, 1) and batch.dtype == np.int8
    # the same thing through the shared preprocessing module, step by step
    x0, y0, x1, y1 = preprocess.square_crop_box(_face(img), clf.crop_margin, img.shape[1], img.shape[0])
    unit = preprocess.face_to_input(img[y0:y1, x0:x1], h, w)
    lo, hi = clf.card.input.range
    details = clf._runner.get_input_details()[clf._input_name]
    scale, zero = details["quantization"]
    expected = preprocess.quantize(lo + unit * (hi - lo), scale, zero)
    assert np.abs(batch[0, :, :, 0].astype(int) - expected.astype(int)).max() <= 1


def test_outputs_are_probabilities_with_card_labels(model_path):
    clf = load_classifier(model_path)
    img = astronaut_bgr()
    (attrs,) = clf.classify(img, [_face(img)])
    assert attrs.emotion in clf.card.labels.emotion
    assert attrs.gender in clf.card.labels.gender
    probs = attrs.emotion_probs
    assert list(probs) == list(clf.card.labels.emotion)
    assert abs(sum(probs.values()) - 1.0) < 0.05
    assert attrs.emotion_score == pytest.approx(max(probs.values()), abs=1e-3)
    assert 0.5 <= attrs.gender_score <= 1.0


def test_batched_and_looped_inference_agree(model_path):
    img = astronaut_bgr()
    boxes = [_face(img), (100.0, 200.0, 150.0, 150.0), (300.0, 300.0, 60.0, 80.0)]
    batched = load_classifier(model_path, batch=True)
    looped = load_classifier(model_path, batch=False)
    assert looped.batch is False
    a, b = batched.classify(img, boxes), looped.classify(img, boxes)
    assert [x.emotion for x in a] == [x.emotion for x in b]
    for x, y in zip(a, b, strict=True):
        assert x.emotion_probs == pytest.approx(y.emotion_probs, abs=0.02)
        assert x.gender_score == pytest.approx(y.gender_score, abs=0.02)


def test_grayscale_frames_classify_like_bgr(model_path):
    clf = load_classifier(model_path)
    img = astronaut_bgr()
    gray = preprocess.to_gray(img)
    assert np.array_equal(clf.prepare(img, [_face(img)]), clf.prepare(gray, [_face(img)]))


def test_no_faces_is_an_empty_result(model_path):
    assert load_classifier(model_path).classify(astronaut_bgr(), []) == []


def test_crop_at_frame_edge_is_clamped(model_path):
    clf = load_classifier(model_path)
    img = astronaut_bgr()
    # a face box hanging over the bottom-right corner still yields a full-size input
    batch = clf.prepare(img, [(480.0, 480.0, 60.0, 60.0)])
    assert batch.shape[1:3] == clf.input_size


def test_detection_box_maps_back_to_the_original_frame():
    # a 1920x1080 frame detected at 640x360: factor 3
    det = Detection(100.2, 50.0, 40.0, 40.0, 0.9)
    assert to_pixel_box(det, 3.0, 1920, 1080) == (301, 150, 120, 120)
    # clamped at the right/bottom edges, never zero-sized
    edge = Detection(630.0, 350.0, 40.0, 40.0, 0.9)
    x, y, w, h = to_pixel_box(edge, 3.0, 1920, 1080)
    assert x + w <= 1920 and y + h <= 1080 and w >= 1 and h >= 1


def test_classifier_type_is_exported():
    assert FaceClassifier.__name__ == "FaceClassifier"
