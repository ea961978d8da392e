"""``facecast`` end to end in a subprocess: real clips, real models, JSON lines, exit codes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import jsonschema
import pytest

import tests.agent_support as support
from agent.events import load_schema

CLIPS, REPO, clip, payloads, run_cli = (
    support.CLIPS,
    support.REPO,
    support.clip,
    support.payloads,
    support.run_cli,
)
assert_one_line_error, astronaut_bgr, free_port = (
    support.assert_one_line_error,
    support.astronaut_bgr,
    support.free_port,
)

FRAMES = 40


def run_stdout(model, state_dir, *args):
    return run_cli(
        "run",
        "--sink",
        "stdout",
        "--model",
        str(model),
        "--state-dir",
        str(state_dir),
        "--device-id",
        "t1",
        *args,
    )


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_run_on_each_clip_emits_schema_valid_json_lines(name, model_path, tmp_path):
    proc = run_stdout(model_path, tmp_path, "--source", str(clip(name)), "--max-frames", str(FRAMES))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines, f"no events on {name}: {proc.stderr[-500:]}"
    validator = jsonschema.Draft202012Validator(load_schema())
    width, height = CLIPS[name]
    previous, frames = -1, 0
    for line in lines:
        record = json.loads(line)  # every stdout line is one JSON document
        kinds = ("frames", "events", "presence", "summary", "stats")
        assert record["topic"] in {f"facecast/t1/{t}" for t in kinds}
        if record["topic"] != "facecast/t1/frames":
            continue  # the tracker's per-person topics (tests/test_tracking.py), the stats
        frames += 1
        event = record["payload"]
        validator.validate(event)
        assert event["seq"] > previous
        previous = event["seq"]
        assert (event["frame"]["width"], event["frame"]["height"]) == (width, height)
        assert 0 <= event["frame"]["index"] < FRAMES
        for face in event["faces"]:
            x, y, w, h = face["box"]
            assert x + w <= width and y + h <= height
    assert 0 < frames <= FRAMES


def test_seq_continues_across_runs_with_the_same_state_dir(model_path, tmp_path):
    source = str(clip("news_interview_portrait"))
    first = payloads(run_stdout(model_path, tmp_path, "--source", source, "--max-frames", "5").stdout)
    second = payloads(run_stdout(model_path, tmp_path, "--source", source, "--max-frames", "5").stdout)
    assert first and second
    assert min(e["seq"] for e in second) > max(e["seq"] for e in first)
    assert first[0]["boot_id"] != second[0]["boot_id"]


def test_folder_source_events_name_their_files(model_path, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "001.jpg"), astronaut_bgr())
    (folder / "002.jpg").write_bytes(b"broken")
    cv2.imwrite(str(folder / "003.png"), astronaut_bgr()[:, ::-1])
    proc = run_stdout(model_path, tmp_path / "state", "--source", str(folder))
    assert proc.returncode == 0, proc.stderr
    events = payloads(proc.stdout)
    assert [e["frame"]["file"] for e in events] == ["001.jpg", "003.png"]
    assert "002.jpg" in proc.stderr  # the skipped file is logged


def test_sigterm_stops_cleanly_within_5_seconds(model_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["FACECAST_SOURCE__DEMO_FPS"] = "20"
    env["FACECAST_SOURCE__DEMO_FRAMES"] = "100000"
    cmd = [sys.executable, "-m", "agent.cli", "run", "--source", "demo", "--sink", "stdout"]
    proc = subprocess.Popen(
        [*cmd, "--model", str(model_path), "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    try:
        # wait for the first frame event: the loop is running (the stats at start come before it)
        first = next(line for line in proc.stdout if json.loads(line)["topic"].endswith("/frames"))
        assert json.loads(first)["payload"]["seq"] >= 0
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=5)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert rc == 0, stderr
    assert elapsed < 5.0
    assert "received SIGTERM" in stderr and "pipeline stopped" in stderr


def test_missing_model_is_one_line(tmp_path):
    proc = run_cli("run", "--source", "demo", "--sink", "stdout", "--model", str(tmp_path / "none.tflite"))
    assert_one_line_error(proc, "model file not found")
    assert proc.stdout == ""


def test_corrupt_model_is_one_line(tmp_path, model_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(os.urandom(3000))
    bad.with_suffix(".json").write_text(model_path.with_suffix(".json").read_text())
    proc = run_cli("run", "--source", "demo", "--sink", "stdout", "--model", str(bad))
    assert_one_line_error(proc, "bad.tflite")


def test_mismatched_card_is_one_line(tmp_path, model_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(model_path.read_bytes())
    card = json.loads(model_path.with_suffix(".json").read_text())
    card["input"]["width"] += 8
    model.with_suffix(".json").write_text(json.dumps(card))
    proc = run_cli("run", "--source", "demo", "--sink", "stdout", "--model", str(model))
    assert_one_line_error(proc, "input shape")


def test_unreadable_source_is_one_line(model_path, tmp_path):
    proc = run_stdout(model_path, tmp_path, "--source", str(tmp_path / "missing.mp4"))
    assert_one_line_error(proc, "source not found")


def test_bad_flag_is_one_line():
    proc = run_cli("run", "--sink", "carrier-pigeon")
    assert proc.returncode == 2
    assert_one_line_error(proc, "--sink")


def test_unreachable_broker_is_not_an_error(model_path, tmp_path):
    """Port 9 (discard) has no broker: the run completes and keeps the events buffered on disk."""
    proc = run_cli(
        "run",
        "--source",
        "demo",
        "--model",
        str(model_path),
        "--state-dir",
        str(tmp_path),
        "--mqtt-host",
        "127.0.0.1",
        "--mqtt-port",
        "9",
        "--max-frames",
        "5",
        env={"FACECAST_SOURCE__DEMO_FRAMES": "5"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_reports_the_figures(model_path, tmp_path):
    results = {}
    for mode in ("--json", "--no-detect-ahead"):  # the default, and the serial loop it is compared with
        proc = run_cli(
            "bench",
            "--source",
            str(clip("short_hamilton_clip")),
            "--model",
            str(model_path),
            "--state-dir",
            str(tmp_path / mode),
            "--max-frames",
            "60",
            "--json",
            *([mode] if mode != "--json" else []),
        )
        assert proc.returncode == 0, proc.stderr
        results[mode] = result = json.loads(proc.stdout)
        assert result["frames"] == 60 and result["fps"] > 0
        assert {"decode", "detect", "classify", "publish"} <= set(result["stages"])
        assert result["peak_rss_mb"] > 20
        # the sampled split is a real sample of this process: its parts fit under the true peak
        anon, file_backed = result["peak_rss_anon_mb"], result["peak_rss_file_mb"]
        assert anon > 10 and file_backed > 10
        assert anon + file_backed <= result["peak_rss_mb"] + 0.5
        assert result["first_event_s"] is None or 0 < result["first_event_s"] < 30
        assert result["faces"] == 0 or result["classify_ms_per_face"] > 0
        # CPU time of the classify stage: real work was counted, and a thread cannot spend more CPU
        # than wall time (plus the thread clock's tick) on its own stage
        assert result["faces"] == 0 or result["classify_cpu_ms_per_face"] > 0
        assert result["classify_cpu_ms_per_face"] <= result["classify_ms_per_face"] * 1.1 + 0.05
    # Where detection runs changes the speed, never what is found.
    assert results["--json"]["faces"] == results["--no-detect-ahead"]["faces"] > 0


def test_demo_without_a_broker_uses_the_embedded_one(model_path, tmp_path):
    port = free_port()
    proc = run_cli(
        "demo",
        "--frames",
        "12",
        "--fps",
        "0",
        "--model",
        str(model_path),
        "--state-dir",
        str(tmp_path),
        "--mqtt-port",
        str(port),
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("seq ")]
    assert len(lines) >= 10
    assert "embedded broker" in proc.stdout
    assert any(" 2 faces " in line for line in lines)


def test_version_is_the_installed_distribution():
    from importlib.metadata import version

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"facecast {version('facecast')}"


def test_demo_flags_override_the_environment_and_the_file_which_override_its_defaults(model_path, tmp_path):
    """``--frames``/``--fps`` are flags like any other: given, they win; absent, the config file and
    ``FACECAST_*`` variables decide, and only then the demo's own 300 frames at 15 fps."""
    config = tmp_path / "demo.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nsource: {{demo_frames: 9, demo_fps: 0}}\n")

    def demo(*flags: str, env: dict[str, str] | None = None) -> str:
        proc = run_cli("demo", "--sink", "stdout", "--model", str(model_path), *flags, env=env, timeout=90)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]

    assert demo("--config", str(config)).startswith("facecast demo: 9 frames")
    six = {"FACECAST_SOURCE__DEMO_FRAMES": "6"}
    assert demo("--config", str(config), env=six).startswith("facecast demo: 6 frames")
    assert demo("--config", str(config), "--frames", "4", env=six).startswith("facecast demo: 4 frames")
    # Without a file, the environment still sets the state directory (the demo's own is the default).
    state = tmp_path / "env-state"
    demo("--frames", "3", "--fps", "0", env={"FACECAST_STATE_DIR": str(state)})
    assert state.is_dir() and any(state.iterdir())


@pytest.mark.parametrize(("source", "needle"), [("picamera2", "picamera2"), ("/dev/video97", "cannot open")])
def test_missing_camera_hardware_is_one_line(source, needle, model_path, tmp_path):
    proc = run_stdout(model_path, tmp_path, "--source", source)
    assert_one_line_error(proc, needle)
    assert "WARN" not in proc.stderr  # OpenCV's own warnings are silenced


def test_unusable_state_dir_is_one_line(model_path, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_stdout(model_path, blocker / "state", "--source", "demo", "--max-frames", "1")
    assert_one_line_error(proc, "cannot create state_dir")
