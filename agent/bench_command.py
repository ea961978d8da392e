"""``facecast bench``: per-stage latency, throughput, memory and start-up time on one source.

Start-up is measured from the process's creation (as the kernel records it), so it includes the
Python interpreter, imports and model loading: what a service restart really costs.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from agent.comms.stdout import StdoutPublisher
from agent.config import AgentConfig
from agent.events import SeqAllocator
from agent.pipeline import FrameResult, Pipeline, PipelineOptions
from agent.system_health import kib_fields

STAGES = ("decode", "resize", "detect", "classify", "publish")


def process_start_time(proc: Path = Path("/proc")) -> float:
    """Wall-clock creation time of this process, as the kernel recorded it.

    Read from ``/proc`` as psutil does, without importing psutil: its ~2 MB would otherwise count
    in the peak RSS this command reports. Elsewhere psutil if installed, else now."""
    try:
        # Field 22 of /proc/self/stat is the start time in clock ticks after boot; the fields
        # after the ")" that closes the command name start at field 3.
        ticks = int((proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    try:
        import psutil

        return float(psutil.Process().create_time())
    except (ImportError, OSError):
        return time.time()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size; ``ru_maxrss`` is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def rss_split_mb(status: Path = Path("/proc/self/status")) -> tuple[float, float, float] | None:
    """``(total, anonymous, file-backed)`` resident MB now, or None off Linux.

    The split matters for reading a peak: file-backed pages are shared libraries, and how many of
    them count depends on the page cache (freshly installed libraries sit in large folios and
    inflate RSS by 10-20 MB until evicted), while anonymous memory is the agent's own."""
    try:
        fields = kib_fields(status.read_text())
        kib = [fields[k] for k in ("VmRSS", "RssAnon", "RssFile")]
    except (OSError, KeyError):
        return None
    return kib[0] / 1024, kib[1] / 1024, kib[2] / 1024


class RssSampler:
    """Samples the RSS split every ``interval`` seconds and keeps the sample at the highest total.

    ``ru_maxrss`` gives the true peak but not its composition; the sampled peak can miss a short
    spike, so both are reported."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak: tuple[float, float, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            sample = rss_split_mb()
            if sample is None:
                return
            if self.peak is None or sample[0] > self.peak[0]:
                self.peak = sample
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


@dataclass
class BenchResult:
    source: str
    frames: int
    faces: int
    events: int
    seconds: float
    fps: float
    classify_ms_per_face: float
    classify_cpu_ms_per_face: float
    """The same stage in CPU time (see ``FrameResult.classify_cpu_ms``): what the faces cost,
    without the waits for a core that the wall-clock figure includes."""
    peak_rss_mb: float
    first_event_s: float | None
    peak_rss_anon_mb: float | None
    """Anonymous part of the highest sampled RSS (the agent's own memory); None off Linux."""
    peak_rss_file_mb: float | None
    """File-backed part (shared libraries and models; varies with the page cache)."""
    cpu_ms_per_frame: float
    """CPU time (all threads) per frame: comparable across runs even on a busy machine."""
    stages: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_bench(
    config: AgentConfig, *, max_frames: int | None = None, sink: str = "null", detect_ahead: bool = True
) -> BenchResult:
    """Run the pipeline on ``config.source`` and measure. ``sink="null"`` serialises every event
    as the stdout sink would, into /dev/null (publish cost without a broker)."""
    from agent.app import build_components, build_publisher, ensure_state_dir
    from agent.state_dir import StateDirLock

    started = process_start_time()
    parts = build_components(config)
    devnull: TextIO | None = None
    if sink == "null":
        devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        publisher: Any = StdoutPublisher(config.device_id, stream=devnull)
    else:
        publisher = build_publisher(config)
    ensure_state_dir(config.state_dir)
    # The mqtt sink opens the event buffer and the client id of any agent on this state_dir.
    lock = StateDirLock(config.state_dir).acquire() if sink == "mqtt" else None
    options = PipelineOptions(
        device_id=config.device_id, max_width=config.source.max_width, max_frames=max_frames
    )
    options.detect_ahead &= detect_ahead  # only ever turned off: the default already knows the cores
    pipeline = Pipeline(
        parts.source,
        parts.detector,
        parts.classifier,
        publisher,
        SeqAllocator(config.state_dir),
        options,
    )
    per_face_ms: list[float] = []
    per_face_cpu_ms: list[float] = []

    def per_face(result: FrameResult) -> None:
        if result.faces:
            per_face_ms.append(result.latency_ms["classify"] / len(result.faces))
            per_face_cpu_ms.append(result.classify_cpu_ms / len(result.faces))

    pipeline.hooks.on_frame.append(per_face)
    publisher.start()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    sampler = RssSampler()
    try:
        with sampler:
            stats = pipeline.run()
    finally:
        publisher.close(timeout=3.0)
        if devnull is not None:
            devnull.close()
        if lock is not None:
            lock.release()
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    # median over frames with faces of (crop + quantize + invoke) / faces: robust to the odd
    # preempted frame on a busy machine, which a mean is not
    classify_per_face = statistics.median(per_face_ms) if per_face_ms else 0.0
    return BenchResult(
        source=parts.source.name,
        frames=stats.frames,
        faces=stats.faces,
        events=stats.events,
        seconds=seconds,
        fps=stats.frames / seconds if seconds > 0 else 0.0,
        classify_ms_per_face=classify_per_face,
        classify_cpu_ms_per_face=statistics.median(per_face_cpu_ms) if per_face_cpu_ms else 0.0,
        peak_rss_mb=peak_rss_mb(),
        peak_rss_anon_mb=sampler.peak[1] if sampler.peak else None,
        peak_rss_file_mb=sampler.peak[2] if sampler.peak else None,
        first_event_s=(stats.first_event_at - started) if stats.first_event_at else None,
        cpu_ms_per_frame=cpu * 1000.0 / max(1, stats.frames),
        stages=pipeline.latency.summary(),
    )


def format_result(r: BenchResult) -> str:
    lines = [f"source         {r.source}", f"frames         {r.frames}  ({r.faces} faces, {r.events} events)"]
    lines.append(f"{'stage':<14} {'median ms':>10} {'p95 ms':>10}")
    for stage in STAGES:
        s = r.stages.get(stage)
        if s:
            lines.append(f"{stage:<14} {s['median']:>10.3f} {s['p95']:>10.3f}")
    first = f"{r.first_event_s:.2f} s" if r.first_event_s is not None else "n/a (no event)"
    split = ""
    if r.peak_rss_anon_mb is not None and r.peak_rss_file_mb is not None:
        anon, file_backed = r.peak_rss_anon_mb, r.peak_rss_file_mb
        split = f" (at the sampled peak: {anon:.1f} anonymous + {file_backed:.1f} file-backed)"
    lines += [
        f"end-to-end     {r.fps:.1f} fps over {r.seconds:.2f} s ({r.cpu_ms_per_frame:.2f} CPU ms per frame)",
        f"classify       {r.classify_ms_per_face:.3f} ms per face (median; "
        f"{r.classify_cpu_ms_per_face:.3f} ms of CPU time)",
        f"peak RSS       {r.peak_rss_mb:.1f} MB{split}",
        f"first event    {first} after process start",
    ]
    return "\n".join(lines)
