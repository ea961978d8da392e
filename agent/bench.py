"""``facecast bench``: per-stage latency, throughput, memory and start-up time on one source.

Start-up is measured from the process's creation (as the kernel records it), so it includes the
Python interpreter, imports and model loading: what a service restart really costs.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from agent.comms.stdout import StdoutPublisher
from agent.config import AgentConfig
from agent.events import SeqAllocator
from agent.pipeline import FrameResult, Pipeline, PipelineOptions

STAGES = ("decode", "resize", "detect", "classify", "publish")


def process_start_time() -> float:
    """Wall-clock creation time of this process (falls back to now if psutil is missing)."""
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


@dataclass
class BenchResult:
    source: str
    frames: int
    faces: int
    events: int
    seconds: float
    fps: float
    classify_ms_per_face: float
    peak_rss_mb: float
    first_event_s: float | None
    cpu_ms_per_frame: float
    """CPU time (all threads) per frame: comparable across runs even on a busy machine."""
    stages: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_bench(config: AgentConfig, *, max_frames: int | None = None, sink: str = "null") -> BenchResult:
    """Run the pipeline on ``config.source`` and measure. ``sink="null"`` serialises every event
    as the stdout sink would, into /dev/null (publish cost without a broker)."""
    from agent.app import build_components, build_publisher, ensure_state_dir

    started = process_start_time()
    parts = build_components(config)
    devnull: TextIO | None = None
    if sink == "null":
        devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        publisher: Any = StdoutPublisher(config.device_id, stream=devnull)
    else:
        publisher = build_publisher(config)
    ensure_state_dir(config.state_dir)
    pipeline = Pipeline(
        parts.source,
        parts.detector,
        parts.classifier,
        publisher,
        SeqAllocator(config.state_dir),
        PipelineOptions(device_id=config.device_id, max_width=config.source.max_width, max_frames=max_frames),
    )
    per_face_ms: list[float] = []

    def per_face(result: FrameResult) -> None:
        if result.faces:
            per_face_ms.append(result.latency_ms["classify"] / len(result.faces))

    pipeline.hooks.on_frame.append(per_face)
    publisher.start()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    try:
        stats = pipeline.run()
    finally:
        publisher.close(timeout=3.0)
        if devnull is not None:
            devnull.close()
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
        peak_rss_mb=peak_rss_mb(),
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
    lines += [
        f"end-to-end     {r.fps:.1f} fps over {r.seconds:.2f} s ({r.cpu_ms_per_frame:.2f} CPU ms per frame)",
        f"classify       {r.classify_ms_per_face:.3f} ms per face (median)",
        f"peak RSS       {r.peak_rss_mb:.1f} MB",
        f"first event    {first} after process start",
    ]
    return "\n".join(lines)
