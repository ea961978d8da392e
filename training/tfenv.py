"""TensorFlow's environment must be set before its first import; this module does only that."""

from __future__ import annotations

import os


def configure(*, onednn: bool, quiet: bool = True) -> None:
    """Set TF env vars. oneDNN off avoids a backward-pass crash of residual stride-2 shortcut
    convolutions seen with TF 2.20/2.21 on this CPU; our plain VGG-style nets train fine with it on,
    about 3x faster, so it is a config switch rather than a hard-coded choice."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
