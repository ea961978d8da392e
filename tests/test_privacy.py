"""Privacy modes on a real broker: ``privacy.gender: false`` and ``privacy.mode: aggregate``.

Every message the agent sends is collected by a subscriber on ``#`` (its own topics and Home
Assistant's), so "nothing else leaves the device" is checked on what actually arrived, not on
what the code means to send.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from agent.model_contract import EMOTIONS, GENDERS
from tests import brokers
from tests.agent_support import DATASETS, REPO, run_cli
from tests.brokers import Subscriber

SCHEMAS = REPO / "agent" / "schema"
UTKFACE = DATASETS / "utkface" / "images"
PHOTOS = 9  # UTKFace portraits, each its own person (min_hits 1, one scene per file)


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


def collect(sub: Subscriber) -> dict[str, list[Any]]:
    """topic -> payloads (JSON decoded where they are JSON), in arrival order."""
    out: dict[str, list[Any]] = {}
    with sub.lock:
        messages = list(sub.messages)
    for topic, payload, _retain in messages:
        try:
            value: Any = json.loads(payload) if payload else ""
        except ValueError:
            value = payload.decode()
        out.setdefault(topic, []).append(value)
    return out


def photo_folder(folder: Path) -> Path:
    if not UTKFACE.is_dir():
        pytest.skip(f"UTKFace missing: {UTKFACE} (set FACECAST_DATASETS)")
    folder.mkdir()
    for i, path in enumerate(sorted(UTKFACE.glob("*.jpg"))[:PHOTOS]):
        canvas = np.full((360, 480, 3), 100, np.uint8)
        canvas[60:252, 144:336] = cv2.resize(cv2.imread(str(path)), (192, 192), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), canvas)
    return folder


def run_agent(
    port: int, tmp_path: Path, model: Path, device: str, source: str, *args: str, **env: str
) -> None:
    env = {"FACECAST_TRACKING__MIN_HITS": "1", "FACECAST_TRACKING__SUMMARY_INTERVAL_S": "86400", **env}
    proc = run_cli("run", "--source", source, "--device-id", device, "--model", str(model),
                   "--state-dir", str(tmp_path / device), "--mqtt-port", str(port), *args,
                   env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_gender_off_leaves_no_gender_in_any_message(mosquitto, tmp_path, model_path):
    sub = Subscriber(mosquitto.port, ["#"])
    run_agent(mosquitto.port, tmp_path, model_path, "priv1", "demo",
              FACECAST_PRIVACY__GENDER="false", FACECAST_SOURCE__DEMO_FRAMES="40")  # fmt: skip
    brokers.wait_for(lambda: "facecast/priv1/summary" in collect(sub), 5)
    sub.close()
    got = collect(sub)
    base = "facecast/priv1/"
    for kind in ("frames", "events", "presence", "summary", "stats", "status"):
        assert got.get(base + kind), f"nothing on {kind}: {sorted(got)}"
    for topic, payloads in got.items():
        for payload in payloads:
            text = json.dumps(payload).lower()
            assert "gender" not in text, (topic, text[:300])
            assert '"male"' not in text and '"female"' not in text, (topic, text[:300])
    # still the documents the schemas describe, emotions and all
    for kind, schema in (("frames", "frame_event"), ("events", "track_event"), ("presence", "presence"),
                         ("summary", "summary"), ("stats", "stats")):  # fmt: skip
        check = validator(schema)
        for payload in got[base + kind]:
            check.validate(payload)
    assert any(f["emotion"]["label"] in EMOTIONS for e in got[base + "frames"] for f in e["faces"])
    configs = {t.split("/")[3]: ps[-1] for t, ps in got.items() if t.startswith("homeassistant/") and ps[-1]}
    assert "gender" not in configs and "faces" in configs and "person" in configs


def summary_of(got: dict[str, list[Any]], device: str) -> dict[str, Any]:
    (summary,) = got[f"facecast/{device}/summary"]  # one window: the whole run falls in a day
    validator("summary").validate(summary)
    return summary  # type: ignore[no-any-return]


def test_aggregate_sends_only_counts_and_withholds_small_groups(mosquitto, tmp_path, model_path):
    """The same photos twice: per person, then aggregate. The aggregate counts are the per-person
    run's where at least k people share them, null elsewhere; nothing per frame or per person."""
    folder = str(photo_folder(tmp_path / "photos"))
    sub = Subscriber(mosquitto.port, ["#"])
    run_agent(mosquitto.port, tmp_path, model_path, "full", folder)
    run_agent(mosquitto.port, tmp_path, model_path, "agg", folder, FACECAST_PRIVACY__MODE="aggregate")
    brokers.wait_for(lambda: "facecast/agg/summary" in collect(sub), 5)
    sub.close()
    got = collect(sub)

    exact = summary_of(got, "full")
    assert exact["people"] == PHOTOS and "min_group_size" not in exact
    counts = summary_of(got, "agg")
    assert counts["min_group_size"] == 3 and "face_frames" not in counts
    assert counts["people"] == PHOTOS
    for group, labels in (("emotion", EMOTIONS), ("gender", GENDERS)):
        for label in labels:
            n = exact[group][label]
            assert counts[group][label] == (n if n >= 3 else None), (group, label, n)
    shown = [n for n in counts["emotion"].values() if n is not None]
    hidden = [label for label, n in counts["emotion"].items() if n is None]
    assert shown and hidden  # both cases happened on these photos

    agg_topics = {t for t in got if "/agg/" in t}
    assert agg_topics == {f"facecast/agg/{k}" for k in ("summary", "stats", "status")}, agg_topics
    for stats in got["facecast/agg/stats"]:
        validator("stats").validate(stats)
        assert stats["faces"] is None and stats["events"] == 0
    assert all(s["faces"] == PHOTOS for s in got["facecast/full/stats"][-1:])
    configs = [ps[-1] for t, ps in got.items() if t.startswith("homeassistant/") and "facecast_agg" in t]
    state_topics = {c["state_topic"] for c in configs if c}
    assert state_topics == {"facecast/agg/summary", "facecast/agg/stats"}, state_topics


def test_aggregate_withholds_every_count_of_a_lone_person(mosquitto, tmp_path, model_path):
    """One person (the demo's astronaut) for the whole window: every count is below k, zero too,
    so the summary says nothing about them, not even which emotions nobody showed."""
    sub = Subscriber(mosquitto.port, ["#"])
    run_agent(mosquitto.port, tmp_path, model_path, "lone", "demo", "--max-frames", "30",
              FACECAST_PRIVACY__MODE="aggregate", FACECAST_TRACKING__MIN_HITS="2")  # fmt: skip
    brokers.wait_for(lambda: "facecast/lone/summary" in collect(sub), 5)
    sub.close()
    summary = summary_of(collect(sub), "lone")
    assert summary["frames"] == 30
    assert summary["people"] is None
    assert set(summary["emotion"].values()) == {None} and set(summary["gender"].values()) == {None}


def test_aggregate_needs_the_tracker_and_a_summary_interval():
    env = {"FACECAST_PRIVACY__MODE": "aggregate", "FACECAST_TRACKING__ENABLED": "false"}
    proc = run_cli("config", "check", "/dev/null", env=env)
    assert proc.returncode == 2 and "privacy.mode" in proc.stderr and "tracking.enabled" in proc.stderr
    proc = run_cli("config", "check", "/dev/null", env={"FACECAST_PRIVACY__MIN_GROUP_SIZE": "1"})
    assert proc.returncode == 2 and "privacy.min_group_size" in proc.stderr
