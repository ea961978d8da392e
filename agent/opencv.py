"""Loads OpenCV before anything else does, so a cv2 that cannot load says why in one line.

The usual way it cannot: a system OpenCV (Debian's ``python3-opencv``, JetPack's) is compiled
against NumPy 1.x, and a venv made with ``--system-site-packages`` over it got NumPy 2 from pip.
NumPy then prints a dozen lines and cv2 raises ``numpy.core.multiarray failed to import``, which
names neither package to change. The ``agent-syscv`` extra pins ``numpy<2`` for exactly this; the
check here catches an upgrade made by hand afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import sys

from agent.errors import OpenCVError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "OpenCV (cv2) is not installed: pip install 'facecast[agent]', or with a system OpenCV "
    "(JetPack's, Debian's python3-opencv) a venv made with --system-site-packages and "
    "pip install 'facecast[agent-syscv]'"
)


def require_opencv() -> None:
    """Import cv2 once; raise :class:`OpenCVError` with the fix when it cannot be imported."""
    if "cv2" in sys.modules:
        return
    noise = io.StringIO()
    try:
        with contextlib.redirect_stderr(noise):  # NumPy's multi-line "compiled using NumPy 1.x"
            importlib.import_module("cv2")
    except ImportError as exc:
        log.debug("import cv2 failed: %s\n%s", exc, noise.getvalue())
        raise OpenCVError(explain_import_error(exc, noise.getvalue())) from exc
    if noise.getvalue():
        log.debug("import cv2 said: %s", noise.getvalue().strip())


def explain_import_error(exc: ImportError, said: str) -> str:
    """One line for a failed ``import cv2``: what is wrong and what to run."""
    if isinstance(exc, ModuleNotFoundError) and exc.name == "cv2":
        return INSTALL_HINT
    spec = importlib.util.find_spec("cv2")
    where = spec.origin if spec is not None and spec.origin else "cv2"
    if "numpy" in str(exc).lower() or "NumPy 1.x" in said or "_ARRAY_API" in said:
        return (
            f"the OpenCV at {where} was built for NumPy 1.x and cannot load with NumPy "
            f"{_numpy_version()}: pip install 'numpy<2' in this venv (the agent-syscv extra pins it)"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the OpenCV at {where} cannot be imported: {first}"


def _numpy_version() -> str:
    try:
        import numpy

        return str(numpy.__version__)
    except ImportError:
        return "(none)"
