"""The fixtures every test file may ask for by name: models, datasets, brokers, small disks.

They live here so that no test file imports a fixture by hand; plain helpers (``run_cli``,
``Subscriber``, ``clip`` ...) stay in tests/agent_support.py, tests/brokers.py, tests/disks.py and
tests/training_support.py and are imported where used. The markers that give the fast lane
(``training``, ``deploy``, ``browser``, ``nodered``) are registered in pyproject.toml and set with
``pytestmark`` in the files they cover.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.classifier import default_model_path
from tests.brokers import Mosquitto
from tests.disks import SmallDisk, mount_tmpfs
from tests.training_support import require_datasets


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The emotion/gender model under test: $FACECAST_TEST_MODEL or the repository's models/."""
    path = Path(os.environ.get("FACECAST_TEST_MODEL") or default_model_path())
    if not path.is_file() or not path.with_suffix(".json").is_file():
        pytest.skip(f"no model at {path} (the lead commits models/facecast_int8.tflite)")
    return path


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared datasets folder, referenced in place (never copied): $FACECAST_DATASETS or
    ``<repo>/../shared/datasets``. A training test without its data fails rather than skips."""
    return require_datasets()


def _running(broker: Mosquitto) -> Iterator[Mosquitto]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh private broker (persistence off) on a free port, stopped after the test."""
    yield from _running(Mosquitto(tmp_path / "mosquitto"))


@pytest.fixture
def persistent_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Like ``mosquitto`` but autosaving, so persistent subscriber sessions survive a SIGKILL."""
    yield from _running(Mosquitto(tmp_path / "mosquitto-p", persistence=True))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], SmallDisk]]:
    """``small_disk(size_bytes)`` mounts a fresh tmpfs of that size; all are unmounted afterwards."""
    mounted: list[Path] = []

    def make(size: int) -> SmallDisk:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        why = mount_tmpfs(path, size)
        if why is not None:
            pytest.skip(why)
        mounted.append(path)
        return SmallDisk(path, size)

    try:
        yield make
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
