"""Frame sources behind one protocol, chosen from the ``--source`` string."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.errors import SourceError
from agent.sources.base import Frame, FrameSource

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")
# user:password@ after a scheme, anywhere: a stream URL, or one inside a gst: pipeline (location=...)
_CREDENTIALS = re.compile(r"(?P<user>\b[a-z][a-z0-9+.-]*://[^\s/@:]*):[^\s/@]*@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Drop the password from every ``scheme://user:pass@host/...`` in ``url`` (a stream URL or a
    ``gst:`` pipeline that holds one) so logs and events never carry it."""
    return _CREDENTIALS.sub(r"\g<user>:***@", url)


def open_source(  # noqa: PLR0911 - one return per kind of source
    spec: str,
    *,
    demo_frames: int = 300,
    demo_fps: float = 0.0,
    camera_width: int = 640,
    camera_height: int = 480,
    max_fps: float = 0.0,
    max_width: int = 640,
    image_sequence: bool = False,
    csi: Mapping[str, Any] | None = None,
) -> FrameSource:
    """``demo`` | ``picamera2`` | camera index or ``/dev/videoN`` | ``rtsp://``/``http(s)://`` URL |
    ``gst:<pipeline>`` | ``csi``/``csi:N`` (a Jetson CSI camera, ``csi`` its settings) | a folder
    of images | an image file | a video file. Raises ``SourceError`` (one line) if it cannot be
    opened, or (a file) if it holds no frame OpenCV can decode.

    ``max_fps`` > 0 caps how many frames a second a live source hands out; files and folders
    always give every frame. ``max_width`` (the detection width) lets still images decode reduced.
    ``image_sequence``: a folder's images are frames of one scene, tracked across files; by default
    each image is a scene of its own."""
    spec = str(spec).strip()
    if not spec:
        raise SourceError("no source given (use --source)")
    if spec == "demo":
        from agent.sources.demo import DemoSource

        return DemoSource(frames=demo_frames, fps=demo_fps)
    if spec == "picamera2":
        from agent.sources.picam import open_picamera2

        return open_picamera2(camera_width, camera_height, max_fps=max_fps)
    from agent.sources import gstreamer, live

    if gstreamer.is_gstreamer_spec(spec):
        return gstreamer.open_spec(spec, csi=csi, label=redact_url(spec), max_fps=max_fps)

    camera = live.parse_camera(spec)
    if camera is not None:
        return live.open_camera(camera, width=camera_width, height=camera_height, max_fps=max_fps)
    if spec.lower().startswith(STREAM_SCHEMES):
        return live.open_stream(spec, label=redact_url(spec), max_fps=max_fps)
    path = Path(spec).expanduser()
    if path.is_dir():
        from agent.sources.files import ImageFolderSource

        return ImageFolderSource(path, max_width=max_width, image_sequence=image_sequence)
    if path.is_file():
        return _open_file(path, max_width=max_width)
    raise SourceError(f"source not found: {spec}")


def _open_file(path: Path, *, max_width: int) -> FrameSource:
    """An image (by its name or its header) or else a video."""
    from agent.sources.files import IMAGE_SUFFIXES, ImageFileSource, VideoFileSource
    from agent.sources.image_header import read_header

    if path.suffix.lower() in IMAGE_SUFFIXES or read_header(path) is not None:
        return ImageFileSource(path, max_width=max_width)
    return VideoFileSource(path)


__all__ = ["Frame", "FrameSource", "SourceError", "open_source", "redact_url"]
