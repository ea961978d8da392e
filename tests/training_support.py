"""Shared helpers for the training tests: where the real datasets are, and how to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    return Path(os.environ.get("FACECAST_DATASETS", REPO.parent / "shared" / "datasets")).resolve()


def require_datasets() -> Path:
    root = datasets_root()
    if not (root / "fer2013").is_dir():
        pytest.fail(f"datasets not found at {root} (set FACECAST_DATASETS)")
    return root


def run_train_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
