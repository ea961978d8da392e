"""Small real file systems for the full-disk tests: a tmpfs of a few MiB, mounted for one test.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere the tests that need it are skipped with that
reason. The ``small_disk`` fixture is in conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


class SmallDisk:
    """A mounted tmpfs at ``path``; :meth:`fill` takes every free byte, :meth:`free` gives it back."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.filler = path / "filler.bin"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write a file until the disk is full (or only ``leave`` bytes are left)."""
        with open(self.filler, "ab", buffering=0) as fh:
            chunk = b"\0" * 4096
            with contextlib.suppress(OSError):  # ENOSPC: that was the point
                while self.free_bytes() > leave:
                    fh.write(chunk)
        assert self.free_bytes() <= leave

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def mount_tmpfs(path: Path, size: int) -> str | None:
    """None when mounted, else why not (the reason a test is skipped with)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if proc.returncode == 0 else f"mount -t tmpfs not permitted here: {proc.stderr.strip()}"
