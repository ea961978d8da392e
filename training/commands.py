"""The stages the CLI runs: train (data -> fit -> float model) and export (int8 -> eval -> card)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from training.config import TrainConfig

log = logging.getLogger(__name__)

FLOAT_MODEL = "model_float.keras"


def describe_init(path: Path | None) -> dict[str, object] | None:
    """The model a run started from, by content: the file at that path changes when a model ships."""
    if path is None:
        return None
    described: dict[str, object] = {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    card = path.with_suffix(".json")
    if card.is_file():
        described["version"] = json.loads(card.read_text()).get("version")
    return described


def run_train(cfg: TrainConfig) -> Path:
    from training.train import fit, plot_history
    from training.training_data import build_training_data

    data = build_training_data(cfg)
    result = fit(cfg, data)
    out = cfg.output_dir
    result.model.save(out / FLOAT_MODEL)
    plot_history(result.history_csv, out / "training_curves.png")
    (out / "train_summary.json").write_text(
        json.dumps(
            {
                "epochs_run": result.epochs_run,
                "seconds": round(result.seconds, 1),
                "precision": result.precision,
                "parameters": int(result.model.count_params()),
                "data": data.summary,
                "emotion_class_weight": [round(float(w), 4) for w in data.emotion_class_weight],
                "config": json.loads(cfg.model_dump_json()),
                "init_from": describe_init(cfg.init_from),
            },
            indent=2,
        )
    )
    log.info("trained %d epochs in %.0f s; float model at %s", result.epochs_run, result.seconds, out)
    return out / FLOAT_MODEL


def run_export(cfg: TrainConfig, ship_dir: Path | None = None, *, force: bool = False) -> Path:
    from training.export import export_and_report

    return export_and_report(cfg, ship_dir=ship_dir, force=force)
