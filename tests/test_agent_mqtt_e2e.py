"""End to end through the real CLI process: ``facecast run`` -> private Mosquitto -> subscriber.

Each shared clip is run for a few frames and every event is checked against the JSON schema.
Then the fault scenarios, with the agent as a separate process: the broker killed mid-run and
restarted; the agent SIGKILLed (the broker publishes the retained ``offline`` will); the agent
restarted while the broker is down (the buffered events arrive, in order, once both are back);
the camera (a local HTTP stream) unplugged for seconds and plugged back in (the MQTT session and the
retained ``online`` stay, and events carry on with seq unbroken).

The fault scenarios use the built-in ``demo`` source paced at a fixed fps, because file sources
are processed as fast as the CPU allows and a kill could not be placed "mid-run" reliably.

Needs a model: the packaged ``models/facecast_int8.tflite`` or ``$FACECAST_TEST_MODEL``
(``.tflite`` with its ``.json`` card beside it); skipped otherwise. Clips come from
``../shared/datasets/videos`` or ``$FACECAST_DATASETS/videos``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import brokers
from tests.agent_support import HttpCamera

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("FACECAST_DATASETS") or REPO.parent / "shared" / "datasets")
CLIPS = sorted((DATASETS / "videos").glob("*.mp4")) if (DATASETS / "videos").is_dir() else []
# Clips where someone faces the camera in each of the first 40 frames (looked at frames 0, 20 and
# 39): an interviewee, and a crowd walking towards the camera. In short_hamilton_clip the singer
# turns to a close profile after the first frames, so there only "some faces" is asserted.
FACING_EVERY_FRAME = {"news_interview_portrait", "facenet_pytorch_video"}
SCHEMA = REPO / "agent" / "schema" / "frame_event.schema.json"
PACKAGED_MODEL = REPO / "models" / "facecast_int8.tflite"

pytestmark = pytest.mark.slow


def _model_args() -> list[str]:
    override = os.environ.get("FACECAST_TEST_MODEL")
    if override:
        return ["--model", override]
    if PACKAGED_MODEL.is_file() and PACKAGED_MODEL.with_suffix(".json").is_file():
        return []
    pytest.skip("no model: neither models/facecast_int8.tflite nor $FACECAST_TEST_MODEL")


def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.skip("agent/schema/frame_event.schema.json missing")
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "FACECAST_MQTT__RECONNECT_MIN_DELAY": "1",
            "FACECAST_MQTT__RECONNECT_MAX_DELAY": "2",
            "FACECAST_MQTT__KEEPALIVE": "10",
            "FACECAST_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def _facecast(
    port: int, state: Path, device: str, source: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "--sink",
        "mqtt",
        "--mqtt-port",
        str(port),
        "--state-dir",
        str(state),
        "--device-id",
        device,
        "--source",
        source,
        *_model_args(),
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"facecast did not finish: {err[-3000:]}")
    assert proc.returncode == 0, f"facecast exited {proc.returncode}: {err[-3000:]}"
    return err


def _events_published(stderr: str) -> int:
    m = re.search(r"pipeline stopped: \d+ frames, (\d+) events", stderr)
    assert m, f"no summary line in: {stderr[-2000:]}"
    return int(m.group(1))


def _frames(sub: brokers.Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads(topic)]


def _assert_contiguous_per_boot(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Within one run (boot_id) seq has no gaps; first sightings are in order across runs."""
    by_boot: dict[str, list[int]] = {}
    for e in events:
        by_boot.setdefault(e["boot_id"], []).append(e["seq"])
    for boot, seqs in by_boot.items():
        first = brokers.first_seen_order(seqs)
        assert first == list(range(first[0], first[0] + len(first))), f"gap/reorder in boot {boot}"
    return {b: brokers.first_seen_order(s) for b, s in by_boot.items()}


@pytest.mark.skipif(not CLIPS, reason=f"no clips under {DATASETS / 'videos'}")
@pytest.mark.parametrize("clip", CLIPS, ids=[c.stem for c in CLIPS])
def test_clip_events_arrive_valid_and_in_order(mosquitto: brokers.Mosquitto, tmp_path, clip):
    validator = _validator()
    device = "e2e-" + re.sub(r"[^a-z0-9]", "", clip.stem.lower())[:20]
    frames_t, status_t = f"facecast/{device}/frames", f"facecast/{device}/status"
    sub = brokers.Subscriber(mosquitto.port, [frames_t, status_t])
    try:
        proc = _facecast(mosquitto.port, tmp_path / "state", device, str(clip), "--max-frames", "40")
        err = _finish(proc)
        n = _events_published(err)
        assert n > 0, "no event (no face found in 40 frames?)"
        assert brokers.wait_for(lambda: len(sub.payloads(frames_t)) >= n, 10)
        events = _frames(sub, frames_t)
        assert len(events) == n  # no outage: exactly once
        for e in events:
            errors = sorted(validator.iter_errors(e), key=str)
            assert not errors, f"schema violation: {errors[0].message} in {e}"
            assert e["device_id"] == device
        assert sum(len(e["faces"]) for e in events) > 0
        if clip.stem in FACING_EVERY_FRAME:  # a face found on every frame (only frames with faces publish)
            assert [e["frame"]["index"] for e in events] == list(range(40))
            assert all(e["faces"] for e in events)
        assert len({e["boot_id"] for e in events}) == 1
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + n))
        assert sub.payloads(status_t)[0] == b"online"
        assert brokers.wait_for(lambda: sub.payloads(status_t)[-1:] == [b"stopped"], 5)
    finally:
        sub.close()


def test_broker_killed_mid_run_every_event_arrives_in_order(
    persistent_mosquitto: brokers.Mosquitto, tmp_path
):
    broker = persistent_mosquitto
    device = "e2e-brokerkill"
    frames_t, status_t = f"facecast/{device}/frames", f"facecast/{device}/status"
    sub = brokers.Subscriber(broker.port, [frames_t, status_t], persistent=True)
    assert brokers.wait_for((broker.workdir / "mosquitto.db").exists, 5)
    time.sleep(1.2)  # the subscriber's session is in the autosave before the kill
    env = _env(FACECAST_SOURCE__DEMO_FPS="40", FACECAST_SOURCE__DEMO_FRAMES="400")
    proc = _facecast(broker.port, tmp_path / "state", device, "demo", env=env)
    try:
        assert brokers.wait_for(lambda: len(sub.payloads(frames_t)) >= 40, 30)
        broker.kill()
        time.sleep(3.0)
        broker.start()
        err = _finish(proc)
        n = _events_published(err)
        assert "connected to" in err and "again" in err, "the agent never reconnected"
        assert brokers.wait_for(lambda: len({e["seq"] for e in _frames(sub, frames_t)}) >= n, 20)
        events = _frames(sub, frames_t)
        firsts = _assert_contiguous_per_boot(events)
        assert sum(len(s) for s in firsts.values()) == n
        assert brokers.wait_for(lambda: sub.payloads(status_t)[-1:] == [b"stopped"], 5)
        statuses = sub.payloads(status_t)
        assert statuses.count(b"online") >= 2, statuses  # announced again after the restart
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sub.close()


def test_agent_sigkill_gives_offline_and_next_run_delivers_the_rest(mosquitto: brokers.Mosquitto, tmp_path):
    device = "e2e-agentkill"
    frames_t, status_t = f"facecast/{device}/frames", f"facecast/{device}/status"
    state = tmp_path / "state"
    sub = brokers.Subscriber(mosquitto.port, [frames_t, status_t])
    env = _env(FACECAST_SOURCE__DEMO_FPS="30", FACECAST_SOURCE__DEMO_FRAMES="100000")
    proc = _facecast(mosquitto.port, state, device, "demo", env=env)
    try:
        assert brokers.wait_for(lambda: len(sub.payloads(frames_t)) >= 20, 30)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert brokers.wait_for(lambda: sub.payloads(status_t)[-1:] == [b"offline"], 10)
        assert brokers.retained(mosquitto.port, status_t) == "offline"
        before = _frames(sub, frames_t)
        # Restarted, the agent comes back online and resumes with a new boot_id and higher seqs.
        proc = _facecast(mosquitto.port, state, device, "demo", "--max-frames", "10", env=env)
        err = _finish(proc)
        n2 = _events_published(err)
        assert brokers.wait_for(lambda: len(_frames(sub, frames_t)) >= len(before) + n2, 10)
        events = _frames(sub, frames_t)
        firsts = _assert_contiguous_per_boot(events)
        assert len(firsts) == 2
        boots = list(dict.fromkeys(e["boot_id"] for e in events))
        assert min(firsts[boots[1]]) > max(firsts[boots[0]])
        assert brokers.retained(mosquitto.port, status_t) == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sub.close()


@pytest.mark.skipif(not CLIPS, reason=f"no clips under {DATASETS / 'videos'}")
def test_agent_run_while_broker_down_then_both_back(tmp_path):
    """Run 1 with no broker (events buffered on disk), run 2 after the broker is up: run 1's
    events arrive first and in order, then run 2's."""
    broker = brokers.Mosquitto(tmp_path / "broker")  # port chosen, not started
    device = "e2e-offline"
    frames_t = f"facecast/{device}/frames"
    state = tmp_path / "state"
    clip = str(CLIPS[0])
    err1 = _finish(_facecast(broker.port, state, device, clip, "--max-frames", "25"))
    n1 = _events_published(err1)
    assert n1 > 0
    assert "unreachable" in err1
    assert "kept on disk" in err1
    broker.start()
    sub = brokers.Subscriber(broker.port, [frames_t])
    try:
        err2 = _finish(_facecast(broker.port, state, device, clip, "--max-frames", "15"))
        n2 = _events_published(err2)
        assert brokers.wait_for(lambda: len(sub.payloads(frames_t)) >= n1 + n2, 10)
        events = _frames(sub, frames_t)
        assert len(events) == n1 + n2
        boots = list(dict.fromkeys(e["boot_id"] for e in events))
        assert len(boots) == 2
        assert [e["boot_id"] for e in events] == [boots[0]] * n1 + [boots[1]] * n2  # old run first
        _assert_contiguous_per_boot(events)
        assert events[n1]["seq"] > events[n1 - 1]["seq"]
    finally:
        sub.close()
        broker.stop()


@pytest.mark.skipif(not CLIPS, reason=f"no clips under {DATASETS / 'videos'}")
def test_camera_gone_for_seconds_keeps_the_mqtt_session_and_status(mosquitto: brokers.Mosquitto, tmp_path):
    """The stream's server goes away: the agent reopens it with backoff while its MQTT session and
    retained ``online`` stay as they were, then carries on, with seq unbroken, once it is back."""
    clip = next((c for c in CLIPS if c.stem == "news_interview_portrait"), CLIPS[0])
    camera = HttpCamera(tmp_path, clip, frames=90)
    device = "e2e-camgone"
    frames_t, status_t = f"facecast/{device}/frames", f"facecast/{device}/status"
    sub = brokers.Subscriber(mosquitto.port, [frames_t, status_t])
    camera.plug_in()
    proc = _facecast(
        mosquitto.port, tmp_path / "state", device, camera.url, env=_env(FACECAST_SOURCE__MAX_FPS="20")
    )
    try:
        assert brokers.wait_for(lambda: len(sub.payloads(frames_t)) >= 10, 30), "no events from the stream"
        camera.unplug()
        # The stream runs dry (the server's last connection ends with the file), then nothing comes.
        quiet = brokers.wait_for(lambda: _quiet_for(sub, frames_t, 1.5), 20, interval=0.1)
        assert quiet, "events kept coming with the camera unplugged"
        time.sleep(3.0)  # gone for several seconds: reopen attempts fail and back off
        assert proc.poll() is None, "the agent exited when its camera went away"
        assert brokers.retained(mosquitto.port, status_t) == "online"
        during = len(sub.payloads(frames_t))
        camera.plug_in()
        assert brokers.wait_for(lambda: len(sub.payloads(frames_t)) >= during + 10, 30), (
            "no events after replug"
        )
        proc.send_signal(signal.SIGTERM)
        err = _finish(proc, timeout=15)
        assert "reopening with backoff" in err and "reopened" in err
        assert err.count("connected to") == 1, "the MQTT session was dropped and made again"
        assert brokers.wait_for(lambda: sub.payloads(status_t)[-1:] == [b"stopped"], 5)
        assert sub.payloads(status_t) == [b"online", b"stopped"]  # never offline, never re-announced
        events = _frames(sub, frames_t)
        assert len({e["boot_id"] for e in events}) == 1
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        camera.unplug()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sub.close()


def _quiet_for(sub: brokers.Subscriber, topic: str, seconds: float) -> bool:
    """True once no message arrived on ``topic`` for ``seconds`` (checked by sampling the count)."""
    before = len(sub.payloads(topic))
    time.sleep(seconds)
    return len(sub.payloads(topic)) == before
