"""Stats: the health figures (fps in/processed, buffer, models, board temperature/load/memory)."""

from __future__ import annotations

import io
import json
import time

from agent.app import run_agent
from agent.config import AgentConfig
from agent.system_health import cpu_temperature_c, system_health
from tests.agent_support import model_path  # noqa: F401


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


def test_agent_stats_carry_rates_models_and_health(tmp_path, model_path):  # noqa: F811
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
    s = stats[-1]
    assert s["fps"] > 0 and s["fps_processed"] > 0
    assert s["dropped"] == 0 and s["buffer_depth"] == 0 and s["mqtt_reconnects"] == 0
    assert s["detector"].startswith("blazeface") and s["classifier"] == model_path.name
    assert s["model_version"] == json.loads(model_path.with_suffix(".json").read_text())["version"]
    assert {"detect", "classify"} <= set(s["latency_ms"])
    assert "load" in s["system"] and "memory" in s["system"]


def test_rss_split_reads_proc_status_and_tolerates_its_absence(tmp_path):
    from agent.bench import RssSampler, rss_split_mb

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
