"""Memory: the pinned mmap threshold (glibc only), and what the run path keeps out of memory."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc tunable"
)

PROBE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from agent.bench_command import rss_split_mb
    from agent.memory import fix_mmap_threshold

    print(fix_mmap_threshold() if sys.argv[1] == "fix" else False)
    frame = np.ones(6 << 20, np.uint8)  # a 1080p BGR frame, freed: glibc's dynamic threshold rises
    del frame
    before = rss_split_mb()[1]
    crop = np.ones(4 << 20, np.uint8)  # the next large buffer
    del crop
    print(round((rss_split_mb()[1] - before) * 1024))
    """
)


def _retained_kib(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return out[0], int(out[1])


def test_freed_large_buffers_leave_the_heap_once_the_threshold_is_pinned() -> None:
    set_, retained = _retained_kib("fix")
    assert set_ == "True"
    assert retained < 512  # the 4 MB buffer went back to the OS on free
    # glibc's default keeps it resident (so this test can fail if the pinning stops working)
    _, default_retained = _retained_kib("nofix")
    assert default_retained > 3000


def test_a_users_malloc_setting_wins() -> None:
    set_, _ = _retained_kib("fix", {"MALLOC_MMAP_THRESHOLD_": "1048576"})
    assert set_ == "False"


FOOTPRINT = textwrap.dedent(
    """
    import sys
    from agent.cli import build_parser
    from agent.config import load_config
    from agent.app import build_classifier, build_detector
    from agent.bench_command import process_start_time
    from agent.system_health import system_health
    from agent.timing import LatencyRecorder
    from agent.comms.mqtt import MqttPublisher
    from agent.homeassistant.discovery import discovery_payload

    build_parser().parse_args(["run", "--source", "demo"])
    config = load_config(None, environ={"FACECAST_MQTT__PASSWORD": "x"})
    build_classifier(config), build_detector(config)
    assert discovery_payload(config)["o"]["sw"]
    recorder = LatencyRecorder()
    recorder.add("detect", 1.0)
    recorder.summary(), system_health(), process_start_time()
    heavy = ("pydantic", "importlib.metadata", "importlib.resources", "psutil", "numpy.ma")
    print(" ".join(sorted(m for m in heavy if m in sys.modules)))
    """
)


def test_the_run_path_leaves_heavy_helpers_unimported() -> None:
    """Each of these once sat in every agent's memory for a convenience: pydantic (config, ~14 MB with
    the ``importlib.metadata`` its plugin scan pulls in), ``importlib.metadata`` for ``--version`` and
    Home Assistant's ``sw`` field (~3 MB), ``importlib.resources`` to find the shipped model (~1.5 MB),
    psutil for two figures /proc has (~2 MB), ``numpy.ma`` via ``np.median`` (~1 MB)."""
    out = subprocess.run([sys.executable, "-c", FOOTPRINT], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
