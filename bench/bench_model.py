"""Per-image int8 inference latency of the shipped model with LiteRT, 1 thread, median of N runs.

Machines are noisy, so the same process also times a baseline (the BlazeFace detector's invoke, which
every frame pays anyway) and prints the ratio: compare ratios across machines, not raw figures.
Usage: python bench/bench_model.py [MODEL.tflite] [--runs 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.classifier import single_pass_path
from agent.preprocess import quantize

REPO = Path(__file__).resolve().parents[1]


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    for _ in range(min(50, runs)):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return sorted(out)


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", nargs="?", type=Path, default=REPO / "models" / "facecast_int8.tflite")
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()

    def time_model(path: Path) -> list[float]:
        interp = Interpreter(model_path=str(path), num_threads=1)
        runner = interp.get_signature_runner(next(iter(interp.get_signature_list())))
        (name, detail), = runner.get_input_details().items()
        scale, zp = detail["quantization"]
        x = np.random.default_rng(0).random(tuple(detail["shape"]), dtype=np.float32)
        q = quantize(x, float(scale), int(zp))
        return _time(lambda: runner(**{name: q}), args.runs)

    model_ms = time_model(args.model)
    # The single-pass variant shipped beside the model (``facecast-train single-pass``), if any.
    variant = single_pass_path(args.model)
    variant_ms = time_model(variant) if variant.is_file() else None

    from agent.detectors.blazeface import BlazeFaceDetector, BlazeFaceOptions

    det = BlazeFaceDetector(BlazeFaceOptions(range="short", num_threads=1))
    frame = (np.random.default_rng(1).random((360, 640, 3)) * 255).astype(np.uint8)
    det_ms = _time(lambda: det.detect(frame), max(100, args.runs // 5))

    def row(label: str, t: list[float]) -> str:
        return f"{label:<34} median {statistics.median(t):8.4f} ms   p95 {t[int(0.95 * len(t)) - 1]:8.4f} ms"

    size_kib = args.model.stat().st_size / 1024
    print(f"model {args.model} ({size_kib:.0f} KiB), LiteRT, 1 thread, {args.runs} runs")
    print(row("facecast int8 (1 face)", model_ms))
    if variant_ms is not None:
        print(row("single-pass variant (1 face)", variant_ms))
        print(f"ratio variant / model: {statistics.median(variant_ms) / statistics.median(model_ms):.3f}")
    print(row("baseline: BlazeFace detect (640x360)", det_ms))
    print(f"ratio model / baseline: {statistics.median(model_ms) / statistics.median(det_ms):.3f}")


if __name__ == "__main__":
    main()
