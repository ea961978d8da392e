"""Errors the CLI reports as one line (no TensorFlow import here, so the CLI can catch them cheaply)."""

from __future__ import annotations


class CheckpointMismatchError(Exception):
    """A checkpoint or run directory made for another architecture than the config asks for."""


class ExportError(Exception):
    """A model that cannot be exported, or an int8 graph that is not what a tool expects of it."""


def _expected() -> tuple[type[Exception], ...]:
    from agent.errors import FacecastError  # a model or card that breaks the contract, no runtime
    from training.config import ConfigError
    from training.datasets import DatasetError

    return (
        ConfigError,
        DatasetError,
        ExportError,
        CheckpointMismatchError,
        FacecastError,
        FileNotFoundError,
        PermissionError,
    )


EXPECTED_ERRORS: tuple[type[Exception], ...] = _expected()
