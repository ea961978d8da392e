"""Per-image int8 inference latency of the shipped model with LiteRT, 1 thread, median of N runs.

Machines are noisy, so the same process also times a baseline (the BlazeFace detector's invoke, which
every frame pays anyway) and prints the ratio: compare ratios across machines, not raw figures. Give
several models to compare them in one run (e.g. a new model against the shipped one); each also gets
its multiply-accumulates per face, counted from the graph (convolutions and dense layers, every
batch row the graph runs: mirror averaging counts twice).
Usage: python bench/bench_model.py [MODEL.tflite ...] [--runs 1000]
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


def macs_per_face(path: Path) -> int:
    """Multiply-accumulates of one invoke with a batch of one face. The tensors' shapes say batch 1
    even where mirror averaging (``REVERSE_V2`` into a ``CONCATENATION`` on the input) makes the
    backbone run two rows, so such a graph counts twice."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    shape = {t["index"]: [int(d) for d in t["shape"]] for t in interp.get_tensor_details()}
    total = 0
    ops = interp._get_ops_details()
    rows = 2 if any(op["op_name"] == "REVERSE_V2" for op in ops) else 1
    for op in ops:
        kind, ins, outs = op["op_name"], op["inputs"], op["outputs"]
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out, weights = shape[outs[0]], shape[ins[1]]
        if kind == "CONV_2D":  # out [N,H,W,Cout], filter [Cout,kh,kw,Cin]
            total += out[0] * out[1] * out[2] * weights[0] * weights[1] * weights[2] * weights[3]
        elif kind == "DEPTHWISE_CONV_2D":  # filter [1,kh,kw,Cout]
            total += out[0] * out[1] * out[2] * weights[1] * weights[2] * weights[3]
        else:  # weights [units, inputs]; out [rows, units]
            total += out[0] * weights[0] * weights[1]
    return rows * total


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="*", type=Path, default=[REPO / "models" / "facecast_int8.tflite"])
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

    from agent.detectors.blazeface import BlazeFaceDetector, BlazeFaceOptions

    det = BlazeFaceDetector(BlazeFaceOptions(range="short", num_threads=1))
    frame = (np.random.default_rng(1).random((360, 640, 3)) * 255).astype(np.uint8)
    det_ms = _time(lambda: det.detect(frame), max(100, args.runs // 5))

    def row(label: str, t: list[float]) -> str:
        return f"{label:<34} median {statistics.median(t):8.4f} ms   p95 {t[int(0.95 * len(t)) - 1]:8.4f} ms"

    print(f"LiteRT, 1 thread, {args.runs} runs per model")
    print(row("baseline: BlazeFace detect (640x360)", det_ms))
    for model in args.models:
        model_ms = time_model(model)
        # The single-pass variant shipped beside the model (``facecast-train single-pass``), if any.
        variant = single_pass_path(model)
        variant_ms = time_model(variant) if variant.is_file() else None
        kib, macs = model.stat().st_size / 1024, macs_per_face(model) / 1e6
        print(f"model {model} ({kib:.0f} KiB, {macs:.1f} M MACs/face)")
        print(row("  facecast int8 (1 face)", model_ms))
        print(f"  ratio model / baseline: {statistics.median(model_ms) / statistics.median(det_ms):.3f}")
        if variant_ms is not None:
            print(f"  single-pass variant: {macs_per_face(variant) / 1e6:.1f} M MACs/face")
            print(row("  single-pass variant (1 face)", variant_ms))
            ratio = statistics.median(variant_ms) / statistics.median(det_ms)
            print(f"  ratio variant / baseline: {ratio:.3f}")


if __name__ == "__main__":
    main()
