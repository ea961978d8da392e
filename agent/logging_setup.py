"""Where the command line's output goes: logging to stderr with credentials masked, stdout kept for
what a command prints on purpose, OpenCV's own log silenced."""

from __future__ import annotations

import io
import logging
import os
import sys

from agent.log_redaction import RedactingFormatter


def setup_logging(level: str) -> None:
    """All logging to stderr, credentials masked (:mod:`agent.log_redaction`); stdout kept for
    what the command prints on purpose (:func:`reserve_stdout`)."""
    reserve_stdout()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler], force=True)
    quiet_opencv()


def quiet_opencv() -> None:
    """Silence OpenCV's own log, whatever ``--log-level`` says.

    It prints a stream's URL with its password (``CAP_IMAGES: File does not exist:
    http://user:pw@...`` at INFO, the URL it tries at DEBUG), its INFO lines go to stdout, and
    at WARN it doubles our one-line errors (e.g. a missing V4L2 device). Our own messages name
    the source, redacted.
    """
    import cv2

    cv_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if cv_logging is not None:
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_SILENT)


def reserve_stdout() -> None:
    """Keep file descriptor 1 for what the agent writes on purpose (``--sink stdout`` events,
    ``bench --json``), so its reader never meets a stray line.

    Native libraries (OpenCV, FFmpeg, LiteRT, GStreamer) write to fd 1 directly, past Python's
    logging. So ``sys.stdout`` moves to a duplicate of fd 1 and fd 1 itself is pointed at stderr:
    whatever else writes there lands beside the log. Idempotent; a no-op when ``sys.stdout`` is
    not a real file (e.g. captured by a test).
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return
    if fd != 1:
        return  # already moved
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        return  # no stderr to point fd 1 at: leave things as they are
    raw = io.FileIO(saved, "w")
    raw.name = "<stdout>"  # what the stdout sink's log line names, instead of a descriptor number
    old = sys.stdout
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=bool(old.line_buffering),
    )
