"""Stats: the health figures (fps in/processed, buffer, models, board temperature/load/memory), on a
timer: at start, every interval with or without frames, and a truthful last one on a clean stop."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from agent.app import run_agent
from agent.config import AgentConfig
from agent.system_health import cpu_temperature_c, system_health
from tests import brokers
from tests.agent_support import REPO, HttpCamera, clip
from tests.brokers import Subscriber, retained

STATS_SCHEMA = REPO / "agent" / "schema" / "stats.schema.json"
DEVICE = "statcam"
STATS, FRAMES = f"facecast/{DEVICE}/stats", f"facecast/{DEVICE}/frames"


def test_cpu_temperature_is_the_hottest_zone_in_celsius(tmp_path):
    for i, milli in enumerate(["41250", "63875", "garbage"]):
        zone = tmp_path / f"thermal_zone{i}"
        zone.mkdir()
        (zone / "temp").write_text(milli + "\n")
    assert cpu_temperature_c(str(tmp_path / "thermal_zone*" / "temp")) == 63.9
    assert cpu_temperature_c(str(tmp_path / "nowhere*" / "temp")) is None


def test_system_health_reports_load_and_memory():
    health = system_health()
    assert len(health["load"]) == 3 and health["cpus"] >= 1
    assert health["memory"]["rss_mb"] > 10 and 0 < health["memory"]["used_percent"] <= 100


def test_agent_stats_carry_rates_models_and_health(tmp_path, model_path):
    out = io.StringIO()
    config = AgentConfig.from_mapping(
        {
            "device_id": "st",
            "state_dir": tmp_path,
            "sink": "stdout",
            "source": {"uri": "demo", "demo_frames": 30, "demo_fps": 30.0},
            "model": {"path": model_path},
            "events": {"stats_interval_s": 0.25},
        }
    )
    run_agent(config, stream=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    stats = [r["payload"] for r in records if r["topic"] == "facecast/st/stats"]
    assert stats, "no stats in a ~1 s run with a 0.25 s interval"
    # the final one may follow the last periodic one by less than a frame: the rates are in the others
    assert any(s["fps"] > 0 and s["fps_processed"] > 0 for s in stats[:-1]), stats
    s = stats[-1]
    assert s["dropped"] == 0 and s["buffer_depth"] == 0 and s["mqtt_reconnects"] == 0
    assert s["detector"].startswith("blazeface") and s["classifier"] == model_path.name
    assert s["model_version"] == json.loads(model_path.with_suffix(".json").read_text())["version"]
    assert {"detect", "classify"} <= set(s["latency_ms"])
    assert "load" in s["system"] and "memory" in s["system"]


def test_rss_split_reads_proc_status_and_tolerates_its_absence(tmp_path):
    from agent.bench_command import RssSampler, rss_split_mb

    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  10240 kB\nRssAnon:\t  6144 kB\nRssFile:\t  4096 kB\n")
    assert rss_split_mb(status) == (10.0, 6.0, 4.0)
    status.write_text("Name:\tpython\nVmRSS:\t  10240 kB\n")  # no split (old kernel, other OS)
    assert rss_split_mb(status) is None
    assert rss_split_mb(tmp_path / "missing") is None

    own = rss_split_mb()
    if own is not None:  # Linux: this very process, and a sampler that sees memory grow
        with RssSampler(interval=0.005) as sampler:
            block = bytearray(64 * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page
            time.sleep(0.1)
        assert sampler.peak is not None and sampler.peak[1] >= own[1] + 60
        del block


def stats_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(STATS_SCHEMA.read_text()))


def run_agent_process(
    port: int, tmp_path: Path, model: Path, source: str, *args: str, **env: str
) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    full_env.update(env)
    cmd = [sys.executable, "-m", "agent.cli", "run", "--source", source, "--device-id", DEVICE,
           "--model", str(model), "--state-dir", str(tmp_path / "state"), "--mqtt-port", str(port),
           *args]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=str(REPO), env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def test_stats_at_start_and_a_final_one_that_tells_the_truth(mosquitto, tmp_path, model_path):
    """An hour's interval: the first message comes once the broker has us (not an hour later), the
    last on the clean stop carries the run's own closing counts and ``connected: false``."""
    sub = Subscriber(mosquitto.port, [STATS])
    proc = run_agent_process(
        mosquitto.port, tmp_path, model_path, "demo", "--max-frames", "30",
        FACECAST_EVENTS__STATS_INTERVAL_S="3600", FACECAST_SOURCE__DEMO_FPS="10",
    )  # fmt: skip
    try:
        assert brokers.wait_for(lambda: len(sub.payloads(STATS)) >= 1, 20), "no stats at start"
        first = json.loads(sub.payloads(STATS)[0])
        assert first["final"] is False and first["publisher"]["connected"] is True
        assert first["frames"] < 30  # sent while the run was still going
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sub.close()
    stopped = re.search(r"pipeline stopped: (\d+) frames, (\d+) events, (\d+) faces", err)
    assert stopped, err[-2000:]
    frames, events, faces = map(int, stopped.groups())
    messages = [json.loads(p) for p in sub.payloads(STATS)]
    assert len(messages) == 2, [m["final"] for m in messages]  # at start, at the stop: none between
    final = messages[-1]
    assert final["final"] is True and final["publisher"]["connected"] is False
    closing = (final["frames"], final["processed"], final["events"], final["faces"])
    assert closing == (frames, frames, events, faces)
    assert frames == 30 and final["buffer_depth"] == 0  # delivered before the last word on it
    assert json.loads(retained(mosquitto.port, STATS) or "{}") == final  # what a late reader sees
    assert retained(mosquitto.port, f"facecast/{DEVICE}/status") == "stopped"
    validator = stats_validator()
    for message in messages:
        validator.validate(message)


@pytest.mark.slow
def test_stats_keep_coming_while_the_camera_is_gone(mosquitto, tmp_path, model_path):
    """The moment someone looks at the stats: frames stopped. They keep coming, saying so."""
    camera = HttpCamera(tmp_path, clip("news_interview_portrait"), frames=60)
    sub = Subscriber(mosquitto.port, [STATS, FRAMES])
    camera.plug_in()
    proc = run_agent_process(
        mosquitto.port, tmp_path, model_path, camera.url,
        FACECAST_EVENTS__STATS_INTERVAL_S="0.5", FACECAST_SOURCE__MAX_FPS="20",
    )  # fmt: skip
    try:
        assert brokers.wait_for(lambda: len(sub.payloads(FRAMES)) >= 10, 30), "no events from the camera"
        camera.unplug()
        assert brokers.wait_for(lambda: quiet_for(sub, FRAMES, 1.5), 20, interval=0.1), "frames kept coming"
        before = len(sub.payloads(STATS))
        time.sleep(3.0)
        during = [json.loads(p) for p in sub.payloads(STATS)[before:]]
        assert len(during) >= 4, f"{len(during)} stats in 3 s without frames, at a 0.5 s interval"
        assert len({m["frames"] for m in during}) == 1  # no frame read
        assert all(m["fps"] == 0 and not m["final"] for m in during)
        assert during[-1]["source"].get("reconnects", 0) + during[-1]["source"].get("failures", 0) >= 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err[-2000:]
    finally:
        camera.unplug()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sub.close()
    final = json.loads(sub.payloads(STATS)[-1])
    assert final["final"] is True and final["frames"] == during[-1]["frames"]
    validator = stats_validator()
    for payload in sub.payloads(STATS):
        validator.validate(json.loads(payload))


def quiet_for(sub: Subscriber, topic: str, seconds: float) -> bool:
    before = len(sub.payloads(topic))
    time.sleep(seconds)
    return len(sub.payloads(topic)) == before
