"""Loads a TFLite interpreter from whichever runtime is installed.

Preference order: LiteRT (``ai-edge-litert``, maintained, XNNPACK int8 kernels), then the legacy
``tflite-runtime`` (slow int8 on x86, but it is what older Pi images ship), then ``tensorflow.lite``
only as a last resort, imported lazily because TensorFlow costs ~1 GB and seconds of start-up.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.errors import ModelError, RuntimeMissingError

log = logging.getLogger(__name__)

#: (module to import, attribute holding the Interpreter class), tried in order.
RUNTIME_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow.lite", "Interpreter"),
)

INSTALL_HINT = (
    "no TFLite runtime found: install one with `pip install ai-edge-litert` "
    "(or `tflite-runtime` on older systems)"
)


def find_interpreter_class(
    candidates: Sequence[tuple[str, str]] = RUNTIME_CANDIDATES,
) -> Callable[..., Any]:
    """Return the first importable ``Interpreter`` class, or raise ``RuntimeMissingError``."""
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, attr, None)
        if cls is not None:
            log.debug("TFLite runtime: %s", module_name)
            return cls  # type: ignore[no-any-return]
    raise RuntimeMissingError(INSTALL_HINT)


def check_tflite_file(model_path: Path) -> None:
    """Cheap start-up check of a model that is loaded later: present and a TFLite flatbuffer
    (file identifier ``TFL3`` at byte 4), so a wrong file fails at start, not mid-stream."""
    try:
        with model_path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelError(
            f"model file not found: {model_path}"
            if isinstance(exc, FileNotFoundError)
            else f"cannot read model {model_path}: {exc.strerror or exc}"
        ) from None
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(f"cannot load model {model_path}: not a TFLite model file")


def load_interpreter(
    model_path: Path,
    *,
    num_threads: int = 1,
    candidates: Sequence[tuple[str, str]] = RUNTIME_CANDIDATES,
) -> Any:
    """Create and allocate an interpreter for ``model_path``.

    A file that is not a valid flatbuffer becomes a one-line ``ModelError`` instead of the
    runtime's multi-line ValueError.
    """
    check_tflite_file(model_path)
    cls = find_interpreter_class(candidates)
    # More threads than cores only adds contention (a config written for a Pi 4 on a Pi Zero).
    threads = max(1, min(int(num_threads), os.cpu_count() or 1))
    try:
        interpreter = cls(model_path=str(model_path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {model_path}: {first}") from exc
    return interpreter
