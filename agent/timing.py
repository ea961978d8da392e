"""Per-stage latency bookkeeping shared by the frame loop and ``facecast bench``."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt


class LatencyRecorder:
    """Keeps the last ``window`` samples per stage (bounded memory on a long-running device).

    Locked: the frame loop adds while the stats timer's thread summarises, and iterating a deque
    that another thread appends to raises."""

    def __init__(self, window: int = 10_000) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._window)).append(ms)

    @contextmanager
    def measure(self, stage: str, into: dict[str, float] | None = None) -> Iterator[None]:
        """Time a block; also store the figure in ``into`` (the current frame's latency map)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            ms = (time.perf_counter() - start) * 1000.0
            self.add(stage, ms)
            if into is not None:
                into[stage] = ms

    def stages(self) -> list[str]:
        with self._lock:
            return list(self._samples)

    def samples(self, stage: str) -> list[float]:
        with self._lock:
            return list(self._samples.get(stage, ()))

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {"n", "mean", "median", "p95"}}`` in milliseconds."""
        with self._lock:
            copies = {stage: list(values) for stage, values in self._samples.items()}
        out: dict[str, dict[str, float]] = {}
        for stage, values in copies.items():
            if not values:
                continue
            arr = np.sort(np.asarray(values, dtype=np.float64))
            out[stage] = {
                "n": float(arr.size),
                "mean": float(arr.mean()),
                "median": quantile(arr, 0.5),
                "p95": quantile(arr, 0.95),
            }
        return out


def quantile(ordered: npt.NDArray[np.float64], q: float) -> float:
    """numpy's default (linear) quantile of sorted values, without ``np.median``/``np.percentile``:
    their NaN checks import ``numpy.ma``, ~1 MB resident for the life of the service from the
    first stats message on."""
    pos = (ordered.size - 1) * q
    lo = int(pos)
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
