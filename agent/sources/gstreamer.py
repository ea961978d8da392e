"""GStreamer pipelines as live sources, through OpenCV's GStreamer backend (``cv2.CAP_GSTREAMER``).

A Jetson's CSI camera is reachable only through GStreamer: ``nvarguscamerasrc`` hands out frames in
NVMM (device) memory and ``nvvidconv`` copies them out, so the agent needs an OpenCV built with
GStreamer (JetPack's, Debian's ``python3-opencv``). PyPI's OpenCV wheels have none, and OpenCV
would only say "cannot open" for every pipeline; the backend is therefore checked first, and its
absence is one line naming the fix.

A pipeline is opened by the same :class:`~agent.sources.live.LatestFrameSource` as cameras and
streams: the newest frame only, ``max_fps``, end-of-stream and errors reopened with backoff, idle
ticks for the watchdog while it is down.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from agent.errors import SourceError
from agent.sources.live import Image, LatestFrameSource

log = logging.getLogger(__name__)

GST_PREFIX = "gst:"
CSI = "csi"

NO_GSTREAMER = (
    "gst: and csi: sources need an OpenCV built with GStreamer, and this one (cv2 {version} at "
    "{where}) has none (PyPI's opencv-python wheels never do): use the system's OpenCV (JetPack's, or "
    "apt install python3-opencv gstreamer1.0-plugins-good) in a venv made with --system-site-packages, "
    "with pip install 'facecast[agent-syscv]' and no opencv-python-headless"
)


@dataclass(frozen=True)
class CsiCamera:
    """A CSI sensor and one of its modes (``width`` x ``height`` at ``fps``), as nvarguscamerasrc
    takes them; a size or rate the sensor has no mode for fails to open."""

    sensor_id: int = 0
    width: int = 1280
    height: int = 720
    fps: int = 30


def csi_pipeline(camera: CsiCamera) -> str:
    """The usual form for OpenCV on a Jetson (NVIDIA's forum answers and samples use it): Argus
    capture in NVMM memory, ``nvvidconv`` to system memory as BGRx (the VIC converts, not the CPU),
    ``videoconvert`` to BGR, and an appsink that keeps only the newest buffer (the grabber thread
    keeps only the newest frame too)."""
    return (
        f"nvarguscamerasrc sensor-id={camera.sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={camera.width},height={camera.height},"
        f"framerate={camera.fps}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def is_gstreamer_spec(spec: str) -> bool:
    """``gst:<pipeline>``, ``csi`` or ``csi:N``."""
    return spec.startswith(GST_PREFIX) or spec == CSI or spec.startswith(CSI + ":")


def parse_csi(spec: str, settings: Mapping[str, Any] | None = None) -> CsiCamera:
    """``csi`` -> the ``source.csi`` settings; ``csi:N`` -> the same with sensor N."""
    camera = CsiCamera(**dict(settings or {}))
    if spec == CSI:
        return camera
    sensor = spec[len(CSI) + 1 :].strip()
    if not sensor.isdigit():
        raise SourceError(f"{spec!r}: a CSI camera is csi:N with N the sensor id (csi:0, csi:1)")
    return CsiCamera(int(sensor), camera.width, camera.height, camera.fps)


def has_gstreamer() -> bool:
    """Whether this cv2 can open GStreamer pipelines (built in, or as a videoio plugin)."""
    registry = getattr(cv2, "videoio_registry", None)
    if registry is not None and hasattr(registry, "hasBackend"):
        return bool(registry.hasBackend(cv2.CAP_GSTREAMER))
    info = cv2.getBuildInformation()
    return any(line.strip().startswith("GStreamer:") and "YES" in line for line in info.splitlines())


def require_gstreamer() -> None:
    if not has_gstreamer():
        where = getattr(cv2, "__file__", None) or "?"
        raise SourceError(NO_GSTREAMER.format(version=cv2.__version__, where=where))


def check_pipeline(pipeline: str) -> None:
    """OpenCV reads from the pipeline's appsink; without one it fails with a vague warning."""
    if not pipeline:
        raise SourceError("gst: needs a pipeline, e.g. gst:videotestsrc ! videoconvert ! appsink")
    last = pipeline.rsplit("!", 1)[-1].split()
    if not last or last[0] != "appsink":
        raise SourceError("a gst: pipeline must end in appsink (e.g. ... ! videoconvert ! appsink)")


class _GError(ctypes.Structure):
    _fields_ = (("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p))


@cache
def _libgstreamer() -> tuple[ctypes.CDLL, ctypes.CDLL] | None:
    """The GStreamer and GLib libraries the system cv2 itself links (None where they cannot load)."""
    try:
        gst = ctypes.CDLL("libgstreamer-1.0.so.0")
        glib = ctypes.CDLL("libglib-2.0.so.0")
    except OSError as exc:
        log.debug("libgstreamer not loadable (%s): pipelines are not parsed before opening", exc)
        return None
    error_p = ctypes.POINTER(_GError)
    gst.gst_init_check.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(error_p))
    gst.gst_init_check.restype = ctypes.c_int
    gst.gst_parse_launch.argtypes = (ctypes.c_char_p, ctypes.POINTER(error_p))
    gst.gst_parse_launch.restype = ctypes.c_void_p
    gst.gst_object_ref_sink.argtypes = (ctypes.c_void_p,)
    gst.gst_object_ref_sink.restype = ctypes.c_void_p
    gst.gst_object_unref.argtypes = (ctypes.c_void_p,)
    gst.gst_object_unref.restype = None
    glib.g_error_free.argtypes = (error_p,)
    glib.g_error_free.restype = None
    error = error_p()
    if not gst.gst_init_check(None, None, ctypes.byref(error)):
        log.debug("gst_init_check failed: %s", error.contents.message if error else "?")
        return None
    return gst, glib


def pipeline_error(pipeline: str) -> str | None:
    """GStreamer's own complaint about ``pipeline`` (no such element, bad property), or None.

    OpenCV drops it: it opens the part that did parse, and a pipeline whose source element is
    missing then waits forever for a first frame (``nvarguscamerasrc ! ... ! appsink`` off a
    Jetson hung ``cv2.VideoCapture`` for good). Parsing is cheap and starts nothing."""
    libs = _libgstreamer()
    if libs is None:
        return None
    gst, glib = libs
    error = ctypes.POINTER(_GError)()
    element = gst.gst_parse_launch(pipeline.encode(), ctypes.byref(error))
    message = None
    if error:
        raw = error.contents.message
        message = raw.decode(errors="replace") if raw else "unknown error"
        glib.g_error_free(error)
    if element:
        gst.gst_object_unref(gst.gst_object_ref_sink(element))
    return message


class GStreamerCapture:
    """One pipeline in ``cv2.VideoCapture``; raises ``SourceError`` naming ``name`` if it does not
    parse (with ``parse_hint``) or does not start (with ``hint``)."""

    def __init__(self, pipeline: str, name: str, hint: str, parse_hint: str = "") -> None:
        problem = pipeline_error(pipeline)
        if problem is not None:
            raise SourceError(f"cannot open {name}: GStreamer says {problem}{parse_hint}")
        self._cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open {name} ({hint})")

    def read(self) -> Image | None:
        ok, image = self._cap.read()
        return np.asarray(image, dtype=np.uint8) if ok and image is not None else None

    def release(self) -> None:
        self._cap.release()


def open_gstreamer(
    pipeline: str, *, name: str, hint: str = "", parse_hint: str = "", **kwargs: Any
) -> LatestFrameSource:
    """A pipeline ending in appsink, as a live source. ``name`` is what logs and errors show (never
    a password: the caller masks it)."""
    pipeline = pipeline.strip()
    check_pipeline(pipeline)
    require_gstreamer()
    hint = hint or "gst-launch-1.0 with the same pipeline, appsink replaced by fakesink, shows why"
    return LatestFrameSource(name, lambda: GStreamerCapture(pipeline, name, hint, parse_hint), **kwargs)


def open_spec(
    spec: str, *, csi: Mapping[str, Any] | None = None, label: str = "", **kwargs: Any
) -> LatestFrameSource:
    """``gst:<pipeline>``, or ``csi`` / ``csi:N`` (the CSI pipeline from the ``csi`` settings).
    ``label`` is ``spec`` with any URL password masked."""
    if spec.startswith(GST_PREFIX):
        return open_gstreamer(spec[len(GST_PREFIX) :], name=label or spec, **kwargs)
    camera = parse_csi(spec, csi)
    hint = (
        f"is nvargus-daemon running, and has sensor {camera.sensor_id} a {camera.width}x{camera.height} "
        f"mode at {camera.fps} fps? gst-launch-1.0 with the pipeline in the log, appsink replaced by "
        "fakesink, shows why"
    )
    pipeline = csi_pipeline(camera)
    log.info("csi:%d is the GStreamer pipeline %s", camera.sensor_id, pipeline)
    parse_hint = (
        " (nvarguscamerasrc and nvvidconv come with JetPack's nvidia-l4t-gstreamer: is this a Jetson?)"
    )
    return open_gstreamer(
        pipeline, name=f"csi:{camera.sensor_id}", hint=hint, parse_hint=parse_hint, **kwargs
    )
