"""Face detectors behind one small protocol, created by name from configuration."""

from __future__ import annotations

from pathlib import Path

from agent.detectors.base import Detection, FaceDetector
from agent.errors import DetectorError

DETECTORS = ("blazeface",)


def create_detector(
    name: str = "blazeface",
    *,
    model_path: Path | None = None,
    range: str = "auto",
    score_threshold: float = 0.5,
    min_face_size: int = 0,
    tiles: int = 1,
    num_threads: int = 1,
) -> FaceDetector:
    """Build a detector; an unknown name or unusable model raises ``DetectorError`` (one line)."""
    if name == "blazeface":
        from agent.detectors.blazeface import BlazeFaceDetector, BlazeFaceOptions

        return BlazeFaceDetector(
            BlazeFaceOptions(
                range=range,
                model_path=model_path,
                score_threshold=score_threshold,
                min_face_size=min_face_size,
                tiles=tiles,
                num_threads=num_threads,
            )
        )
    from agent.config.settings import REMOVED_DETECTORS

    if name in REMOVED_DETECTORS:
        raise DetectorError(REMOVED_DETECTORS[name])
    raise DetectorError(f"unknown detector {name!r} (choose from {', '.join(DETECTORS)})")


__all__ = ["DETECTORS", "Detection", "DetectorError", "FaceDetector", "create_detector"]
