"""The pinned mmap threshold returns a freed frame-sized buffer to the OS (glibc only)."""

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
    from agent.bench import rss_split_mb
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
