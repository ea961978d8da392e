"""Measure how each dataset frames a face relative to the agent's detector box.

The agent crops ``box * (1 + 2 * margin)``; this reports, per dataset, the whole image's side as a
multiple of the BlazeFace box side, which is what ``framing.agent_margin`` is chosen from.
Run: ``python -m training.measure_framing [DATASETS_ROOT]``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.detectors import create_detector
from training.datasets import load_fer2013_folder, load_utkface

log = logging.getLogger(__name__)


def image_to_box_ratios(images: npt.NDArray[np.uint8], canvas: int = 384) -> npt.NDArray[np.float64]:
    """Each face is centred on a gray canvas 3x its size, so the short-range detector sees a whole face."""
    det = create_detector("blazeface", score_threshold=0.5)
    ratios = []
    for im in images:
        s = im.shape[0]
        board = np.full((3 * s, 3 * s), 128, np.uint8)
        board[s : 2 * s, s : 2 * s] = im
        board = np.asarray(cv2.resize(board, (canvas, canvas), interpolation=cv2.INTER_LINEAR), np.uint8)
        found = det.detect(np.asarray(cv2.cvtColor(board, cv2.COLOR_GRAY2BGR), dtype=np.uint8))
        if found:
            box = max(found, key=lambda d: d.score).box
            ratios.append((canvas / 3) / max(box[2], box[3]))
    return np.asarray(ratios)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = argv if argv is not None else sys.argv[1:]
    root = Path(args[0]) if args else Path("../shared/datasets")
    sets = {
        "FER2013 test": load_fer2013_folder(root / "fer2013", "test", limit_per_class=60).images,
        "UTKFace val": load_utkface(root / "utkface", "val", limit=400).images,
    }
    for name, images in sets.items():
        r = image_to_box_ratios(images)
        log.info(
            "%s: detected %d/%d; image side / box side median %.3f (p10 %.3f, p90 %.3f) -> margin %.3f",
            name, len(r), len(images), np.median(r), np.percentile(r, 10), np.percentile(r, 90),
            (np.median(r) - 1) / 2,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
