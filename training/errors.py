"""Errors the CLI reports as one line (no TensorFlow import here, so the CLI can catch them cheaply)."""

from __future__ import annotations


class CheckpointMismatchError(Exception):
    """A checkpoint or run directory made for another architecture than the config asks for."""


class ExportError(Exception):
    """A model that cannot be converted or does not meet the model contract."""


class TeacherError(Exception):
    """A distillation teacher that is missing, unreadable or not a facecast model."""


def _expected() -> tuple[type[Exception], ...]:
    from training.config import ConfigError
    from training.datasets import DatasetError

    return (
        ConfigError,
        DatasetError,
        ExportError,
        CheckpointMismatchError,
        TeacherError,
        FileNotFoundError,
        PermissionError,
    )


EXPECTED_ERRORS: tuple[type[Exception], ...] = _expected()
