"""Event documents, their JSON Schema, and sequence numbers that survive restarts."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from agent.classifier import FaceAttributes
from agent.events import FaceResult, SeqAllocator, build_frame_event, iso_utc_ms, load_schema, schema_path
from agent.model_contract import EMOTIONS


def _event(**over):
    attrs = FaceAttributes(
        emotion="happy",
        emotion_score=0.8,
        emotion_probs={e: (0.8 if e == "happy" else 0.2 / 6) for e in EMOTIONS},
        gender="female",
        gender_score=0.9,
    )
    kwargs = {
        "device_id": "cam-1",
        "boot_id": "0b6e3c55-52f0-4a8b-9a36-2b8e0b1c7d10",
        "seq": 7,
        "timestamp": 1_795_000_000.1234,
        "frame_index": 3,
        "width": 640,
        "height": 360,
        "faces": [FaceResult(box=(10, 20, 30, 40), score=0.93, attributes=attrs)],
        "latency_ms": {"decode": 1.0, "detect": 2.0, "classify": 0.3},
    }
    kwargs.update(over)
    return build_frame_event(**kwargs)


def validator():
    return jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker())


def test_schema_file_is_a_valid_2020_12_schema():
    schema = json.loads(schema_path().read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_built_event_validates_and_has_no_image_data():
    event = _event(file="img_001.jpg")
    validator().validate(event)
    assert event["frame"]["file"] == "img_001.jpg"
    assert event["faces"][0]["box"] == [10, 20, 30, 40]
    assert len(json.dumps(event)) < 2000  # metadata only


def test_schema_rejects_extra_keys_and_bad_values():
    v = validator()
    event = _event()
    event["image"] = "base64..."
    assert not v.is_valid(event)
    event = _event()
    event["faces"][0]["box"] = [1.5, 2, 3, 4]
    assert not v.is_valid(event)
    event = _event()
    event["faces"][0]["emotion"]["label"] = "joy"
    assert not v.is_valid(event)
    event = _event()
    event["ts"] = "2026-11-28 01:02:03"
    assert not v.is_valid(event)


def test_timestamps_are_utc_with_milliseconds():
    assert iso_utc_ms(0.0) == "1970-01-01T00:00:00.000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso_utc_ms(1_795_000_000.1239))
    assert iso_utc_ms(1.5).endswith(".500Z")


def test_seq_is_monotonic_and_continues_after_restart(tmp_path):
    first = SeqAllocator(tmp_path, block=10)
    a = [first.next() for _ in range(25)]
    assert a == list(range(25))
    second = SeqAllocator(tmp_path, block=10)  # "restart" without any clean shutdown
    b = [second.next() for _ in range(5)]
    assert min(b) > max(a)
    assert b == sorted(b)
    assert first.boot_id != second.boot_id


def test_seq_after_a_crash_before_any_number_was_used(tmp_path):
    first = SeqAllocator(tmp_path, block=100)
    used = first.next()
    # the process dies here: nothing else written. The next run must not reuse `used`.
    assert SeqAllocator(tmp_path, block=100).next() > used


def test_corrupt_seq_state_jumps_forward(tmp_path):
    first = SeqAllocator(tmp_path, block=10)
    last = [first.next() for _ in range(3)][-1]
    (tmp_path / "seq.json").write_text("{garbage")
    assert SeqAllocator(tmp_path).next() > last


@pytest.mark.parametrize("block", [1, 3])
def test_small_blocks_still_persist(tmp_path, block):
    alloc = SeqAllocator(tmp_path, block=block)
    values = [alloc.next() for _ in range(7)]
    assert json.loads((tmp_path / "seq.json").read_text())["next"] >= values[-1] + 1
