"""Keep per-frame buffers from piling up in the C heap (glibc only; a no-op elsewhere).

Every frame allocates and frees a few large buffers (a 1080p BGR frame is 6 MB). glibc serves
allocations above its mmap threshold with ``mmap`` and returns them on ``free`` — but the first time
such a block is freed it raises the threshold to the block's size (up to 32 MB), and from then on
frames come from the heaps of whichever threads touch them, where freed memory stays resident. Fixing
the threshold turns that adjustment off: on the 1080p clip the agent's anonymous memory peaked
lower (``facecast bench``; docs/performance.md), for one ``mmap``/``munmap`` pair per large buffer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value
ENV_OVERRIDE = "MALLOC_MMAP_THRESHOLD_"  # glibc's tunable; a user's setting wins


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold; returns whether it was set (False off glibc or when overridden)."""
    if ENV_OVERRIDE in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    log.debug("malloc mmap threshold fixed at %d bytes: %s", threshold, ok)
    return ok
