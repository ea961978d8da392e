"""Board health figures for the stats message: CPU temperature, load, memory.

A Pi that throttles at 80 °C or swaps explains a falling fps better than any pipeline counter, so
these travel with the stats. Every figure is optional: a board (or container) that does not expose
it simply leaves the key out instead of failing the stats message.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

THERMAL_GLOB = "/sys/class/thermal/thermal_zone*/temp"


def cpu_temperature_c(pattern: str = THERMAL_GLOB) -> float | None:
    """Highest thermal-zone reading in °C (millidegrees in sysfs), or None where none is exposed."""
    readings: list[float] = []
    for path in sorted(glob.glob(pattern)):
        try:
            readings.append(int(Path(path).read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return round(max(readings), 1) if readings else None


def memory_mb(proc: Path = Path("/proc")) -> dict[str, float]:
    """This process's RSS and the machine's available memory, in MB.

    Linux's ``/proc`` gives the same figures psutil computes from it, without adding psutil's
    ~2 MB of imports to the service it measures; psutil (if installed) covers other systems."""
    try:
        status = kib_fields((proc / "self" / "status").read_text())
        meminfo = kib_fields((proc / "meminfo").read_text())
        rss, total, available = status["VmRSS"], meminfo["MemTotal"], meminfo["MemAvailable"]
    except (OSError, KeyError):
        return _memory_from_psutil()
    return {
        "rss_mb": round(rss / 1024, 1),
        "available_mb": round(available / 1024, 1),
        "used_percent": round(100.0 * (total - available) / total, 1) if total else 0.0,
    }


def kib_fields(text: str) -> dict[str, int]:
    """``Name:   1234 kB`` lines of ``/proc/*/status`` or ``/proc/meminfo`` -> ``{"Name": 1234}``
    (lines without a number are skipped)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            out[name.strip()] = int(value[0])
    return out


def _memory_from_psutil() -> dict[str, float]:
    try:
        import psutil
    except ImportError:
        return {}
    vm = psutil.virtual_memory()
    return {
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "available_mb": round(vm.available / 2**20, 1),
        "used_percent": round(float(vm.percent), 1),
    }


def system_health() -> dict[str, Any]:
    out: dict[str, Any] = {}
    temp = cpu_temperature_c()
    if temp is not None:
        out["cpu_temp_c"] = temp
    with contextlib.suppress(OSError):  # not every platform has a load average
        out["load"] = [round(v, 2) for v in os.getloadavg()]
    out["cpus"] = os.cpu_count() or 1
    mem = memory_mb()
    if mem:
        out["memory"] = mem
    return out
