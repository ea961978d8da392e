"""Errors the CLI turns into one ``facecast: error: ...`` line.

Every failure a user can cause (bad model, bad source, bad config) raises a subclass of
``FacecastError`` whose message is already a complete, single-line explanation, so the CLI never
needs to show a traceback.
"""

from __future__ import annotations


class FacecastError(Exception):
    """Base class: the message is user-facing and fits on one line."""


class RuntimeMissingError(FacecastError):
    """No TFLite interpreter package is installed."""


class ModelError(FacecastError):
    """A model file or its card is missing, corrupt or does not match the contract."""


class DetectorError(FacecastError):
    """A face detector cannot be created (unknown or removed name, missing or unusable model)."""


class SourceError(FacecastError):
    """A frame source cannot be opened (unreadable file, missing camera library...)."""


class ConfigError(FacecastError):
    """The configuration file, environment or flags are invalid."""


class OpenCVError(FacecastError):
    """OpenCV (cv2) is missing or cannot load, e.g. a system OpenCV under a NumPy it was not built for."""
