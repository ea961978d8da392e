"""Training cost per image for each candidate architecture and precision, on this machine.

A full training run must fit in 2 hours on 2 cores, so what an architecture or a precision costs per
image decides how many epochs it gets. This times the real training step: the same augmenting
``tf.data`` pipeline, model, masked losses and optimizer as ``facecast-train``, on synthetic images of
the training canvas (the cost does not depend on what the pixels show). Machines are noisy: each
figure is the median over ``--repeat`` passes of each pass's median step, and the ratio against
``vgg-xs`` in float32, timed in the same process, is what compares across machines.

Usage: python bench/bench_train_step.py [--arch vgg-xs --arch vgg-s ...] [--precision float32 ...]
       [--steps 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from training import tfenv

tfenv.configure(onednn=True)

import numpy as np  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.datasets import Samples  # noqa: E402
from training.model import ARCHITECTURES  # noqa: E402
from training.train import compile_model, spec_from_config, train_dataset  # noqa: E402
from training.training_data import LOOSE, TIGHT, TrainingData  # noqa: E402

BASELINE = ("vgg-xs", "float32")
# Images per epoch of the full recipe (FER2013 train less validation, UTKFace train): what a
# ms/image figure costs per epoch.
FULL_EPOCH = 44_104


def synthetic_data(cfg: TrainConfig, n: int, seed: int = 0) -> TrainingData:
    """Half FER2013-like (emotion, tight framing), half UTKFace-like (gender, loose framing)."""
    rng = np.random.default_rng(seed)
    canvas = cfg.framing.canvas
    half = n // 2
    emotion = np.concatenate([rng.integers(0, 7, half), np.full(n - half, -1)]).astype(np.int64)
    gender = np.concatenate([np.full(half, -1), rng.integers(0, 2, n - half)]).astype(np.int64)
    soft = np.zeros((n, 7), np.float32)
    soft[np.arange(half), emotion[:half]] = 1.0
    train = Samples(
        images=rng.integers(0, 256, (n, canvas, canvas), dtype=np.uint8),
        emotion=emotion,
        gender=gender,
        names=[f"synthetic_{i}" for i in range(n)],
        source="synthetic",
        emotion_soft=soft,
    )
    framing = np.concatenate([np.full(half, TIGHT), np.full(n - half, LOOSE)]).astype(np.int64)
    return TrainingData(
        train=train,
        framing=framing,
        val=train.subset(np.arange(0)),
        emotion_class_weight=np.ones(7, np.float32),
        summary={"synthetic": n},
    )


def time_step(arch: str, precision: str, *, steps: int, repeat: int, batch: int) -> list[float]:
    """Milliseconds per training image, one figure per pass: the median step of ``steps`` batches.

    Steps are timed one by one from a batch callback, as in a real run (whose schedule callback
    also runs at every batch). Timing whole ``fit`` calls without one gave pass times stuck at
    5.1 or 10.2 s (2.0 or 4.0 ms per image) for every architecture on a Zen 4 host, whatever the
    work: something in the asynchronous dispatch, not the model."""
    import keras

    from training.model import build_model

    class StepClock(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[float] = []

        def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None:
            if batch == 0:
                self.stamps = [time.perf_counter()]

        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            self.stamps.append(time.perf_counter())

    cfg = TrainConfig(architecture=arch, precision=precision, batch_size=batch)  # type: ignore[arg-type]
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(spec_from_config(cfg), precision=precision)
    compile_model(model, cfg)
    data = synthetic_data(cfg, steps * batch)
    ds = train_dataset(data, cfg)
    clock = StepClock()
    model.fit(ds, epochs=1, verbose=0, callbacks=[clock])  # trace and warm up
    out = []
    for _ in range(repeat):
        model.fit(ds, epochs=1, verbose=0, callbacks=[clock])
        step_ms = [(b - a) * 1000.0 for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]
        out.append(statistics.median(step_ms) / batch)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", action="append", choices=ARCHITECTURES, help="default: all candidates")
    ap.add_argument(
        "--precision",
        action="append",
        choices=("float32", "mixed_bfloat16"),
        help="default: float32, and mixed_bfloat16 where precision 'auto' would pick it",
    )
    ap.add_argument("--steps", type=int, default=40, help="batches per timed pass")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes (median reported)")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    if args.steps < 1 or args.repeat < 1 or args.batch < 1:
        ap.error("--steps, --repeat and --batch must be at least 1")

    archs = args.arch or list(ARCHITECTURES)
    auto = tfenv.resolve_precision("auto")
    precisions = args.precision or sorted({"float32", auto})
    runs = [BASELINE] + [(a, p) for a in archs for p in precisions if (a, p) != BASELINE]

    print(f"training step, batch {args.batch}, {args.steps} batches x {args.repeat} passes")
    print(f"precision 'auto' trains in {auto} on this CPU")
    print(f"{'architecture':<10} {'precision':<15} {'ms/image':>9} {'min':>7} {'s/epoch':>8} {'ratio':>6}")
    base = 0.0
    for arch, precision in runs:
        times = time_step(arch, precision, steps=args.steps, repeat=args.repeat, batch=args.batch)
        med = statistics.median(times)
        base = base or med
        epoch_s = med * FULL_EPOCH / 1000.0
        print(f"{arch:<10} {precision:<15} {med:9.3f} {min(times):7.3f} {epoch_s:8.0f} {med / base:6.2f}")
    print(f"s/epoch: for {FULL_EPOCH:,} images (the full recipe's epoch)")
    print(f"ratio: against {BASELINE[0]} in {BASELINE[1]}, timed first in this process")


if __name__ == "__main__":
    main()
