"""``facecast-train``: train, export (int8 + evaluation + model card), evaluate, or all of it.

Every expected failure (missing dataset, bad config, mismatched checkpoint...) ends in one line on
stderr and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agent.config.layering import parse_assignments
from training.config import TrainConfig, load_config

log = logging.getLogger("facecast.train")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facecast-train", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("train", "fit the model (resumes from output_dir/backup if interrupted)"),
        ("export", "quantize the best checkpoint to int8, evaluate float vs int8, write the model card"),
        ("all", "train, then export"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", type=Path, help="training config YAML")
        sp.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
        )
        sp.add_argument(
            "--ship",
            type=Path,
            help="also copy model + card to this folder (e.g. models/), if the model beats the one "
            "there on validation",
        )
        sp.add_argument("--force", action="store_true", help="with --ship: ship even if it does not")
    ev = sub.add_parser("evaluate", help="evaluate a .tflite model on the test sets")
    ev.add_argument("model", type=Path)
    ev.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    ev.add_argument("--out", type=Path, default=Path("runs/eval"))
    sp1 = sub.add_parser(
        "single-pass",
        help="derive the single-pass (no mirror averaging) variant of an int8 model, evaluate it, card it",
    )
    sp1.add_argument("model", type=Path)
    sp1.add_argument("--out", type=Path, help="default: <model stem>_single.tflite beside the model")
    sp1.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    sp1.add_argument("--eval-dir", type=Path, default=Path("runs/eval-single"))
    return p


def _run(args: argparse.Namespace) -> int:
    from training.tfenv import configure

    if args.command == "evaluate":
        configure(onednn=True)
        from training.evaluate import evaluate_tflite_cli

        evaluate_tflite_cli(args.model, args.datasets, args.out)
        return 0
    if args.command == "single-pass":
        configure(onednn=True)
        from training.single_pass import make_variant

        make_variant(args.model, args.out, args.datasets, args.eval_dir)
        return 0
    cfg: TrainConfig = load_config(args.config, parse_assignments(args.set, example="epochs=10"))
    configure(onednn=cfg.onednn)
    from training.commands import run_export, run_train

    if args.command in ("train", "all"):
        run_train(cfg)
    if args.command in ("export", "all"):
        run_export(cfg, ship_dir=args.ship, force=args.force)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    args = _parser().parse_args(argv)
    from training.errors import EXPECTED_ERRORS

    try:
        return _run(args)
    except EXPECTED_ERRORS as exc:
        print(f"facecast-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facecast-train: interrupted (resume with the same command)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
