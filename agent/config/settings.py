"""The agent's configuration model. Every section forbids unknown keys, so a typo fails loudly.

The ``mqtt`` section's type lives in :mod:`agent.config.mqtt` (owned by the comms side).
"""

from __future__ import annotations

import os
import re
import socket
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from agent.config.mqtt import MqttConfig
from agent.config.topics import MAX_TOPIC_BYTES, part_problem
from agent.config.validation import Section, SettingError, setting


class _Section(Section):
    pass


def check_topic_part(section: Section, name: str, *, strip: bool = True, root: bool = False) -> None:
    """Refuse a configured topic piece the broker would drop (see :mod:`agent.config.topics`).

    ``strip`` forgives a leading/trailing ``/`` as the topic builders do; ``root`` marks a piece
    that starts a topic, where ``$`` would hand the messages to the broker instead of subscribers.
    """
    value = getattr(section, name)
    if strip:
        value = value.strip("/")
        setattr(section, name, value)
    problem = part_problem(value)
    if problem is None and root and value.startswith("$"):
        problem = "must not start with '$' (topics under '$' belong to the broker)"
    if problem:
        raise SettingError(problem, field=name)


def default_state_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` when run as a service, else the XDG state folder."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "facecast"


class CsiConfig(_Section):
    """A Jetson CSI camera (``source: {csi: {...}}``, or ``uri: csi:N`` for sensor N with this size
    and rate). nvarguscamerasrc opens only a size and rate the sensor has a mode for; 1280x720 at
    30 fps is one of the IMX219's and IMX477's (the Jetson dev kits' usual cameras)."""

    sensor_id: int = setting(default=0, ge=0)
    width: int = setting(default=1280, gt=0)
    height: int = setting(default=720, gt=0)
    fps: int = setting(default=30, gt=0)


class SourceConfig(_Section):
    """Where frames come from. ``uri``: camera index, ``/dev/videoN``, URL, video file, folder,
    ``picamera2``, ``demo``, ``gst:<pipeline ending in appsink>`` or ``csi:N``. ``max_width`` scales
    frames down before detection (0 = never)."""

    uri: str = "0"
    max_width: int = setting(default=640, ge=0)
    camera_width: int = setting(default=640, gt=0)
    camera_height: int = setting(default=480, gt=0)
    max_fps: float = setting(default=0.0, ge=0.0)
    """Live sources (cameras, streams, picamera2): process at most this many frames a second, always
    the newest; the frames in between are dropped and counted. 0 = as many as the device keeps up
    with. Files, folders and the demo always give every frame."""
    demo_frames: int = setting(default=300, gt=0)
    demo_fps: float = setting(default=0.0, ge=0.0)
    image_sequence: bool = False
    """A folder source's images are frames of one scene (a video saved as files): track faces
    across them. By default each image is a scene of its own, with tracks and smoothed labels
    that never span two files (a folder of photos shows different people at the same place)."""
    csi: CsiConfig = setting(default_factory=CsiConfig)


#: Detectors facecast no longer has, and the one line a config naming one gets instead of "must be
#: one of". Haar went because OpenCV 5 (what ``opencv-python-headless`` installs) has no cascades.
REMOVED_DETECTORS: Mapping[str, str] = types.MappingProxyType(
    {"haar": "the 'haar' detector was removed (OpenCV 5 has no Haar cascades); use 'blazeface'"}
)


class DetectorConfig(_Section):
    name: Literal["blazeface"] = "blazeface"
    model_path: Path | None = None
    range: Literal["short", "full", "auto"] = "auto"
    score_threshold: float = setting(default=0.5, gt=0.0, lt=1.0)
    min_face_size: int = setting(default=0, ge=0)
    """Smallest face side, in pixels of the detection frame (after ``source.max_width``)."""
    tiles: int = setting(default=1, ge=1, le=6)
    num_threads: int = setting(default=1, ge=1, le=16)

    @classmethod
    def before(cls, name: str, value: Any) -> Any:
        if name == "name" and isinstance(value, str) and value in REMOVED_DETECTORS:
            raise SettingError(REMOVED_DETECTORS[value])
        return value


class ModelConfig(_Section):
    """The emotion/gender model. ``path`` None = the installed ``facecast_models`` package."""

    path: Path | None = None
    num_threads: int = setting(default=1, ge=1, le=16)
    """LiteRT threads for the classifier (capped at the CPU count). One, because detection already
    runs on the other core, one frame ahead: on 2 cores, two threads here made the agent slower
    (their spinning workers compete with the detect thread; docs/performance.md). Raise it with
    more cores than stages."""
    batch: bool = True
    """Classify all faces of a frame in one invoke when the runtime allows it."""
    single_pass: bool = False
    """The shipped model averages each face with its mirror image inside the graph. ``true`` picks
    its single-pass variant (``facecast_int8_single.tflite``, same weights, no mirror): about half
    the per-face time for slightly lower accuracy (figures in docs/performance.md and
    models/MODEL_CARD.md). Only for the shipped model: with ``path``, point it at the file you want."""
    flip_tta: bool | None = None
    """Deprecated spelling of ``single_pass`` (``flip_tta: false`` = ``single_pass: true``), read for
    one more release with a warning (:data:`agent.config.loader.FLIP_TTA_DEPRECATED`); None = not set."""

    def check(self) -> None:
        if self.flip_tta is not None:
            if self.single_pass and self.flip_tta:
                raise SettingError("true contradicts single_pass: true; drop flip_tta", field="flip_tta")
            self.single_pass = not self.flip_tta
        if self.path is not None and self.single_pass:
            raise SettingError(
                "true selects the shipped single-pass model; with model.path set, "
                "point model.path at the file you want instead",
                field="single_pass",
            )


class EventsConfig(_Section):
    publish_empty: bool = False
    """Also publish frames with no face (useful as a liveness signal; costs bandwidth)."""
    subtopic: str = "frames"
    stats_interval_s: float = setting(default=60.0, ge=0.0)
    """Publish health counters on ``.../stats`` this often (0 = never)."""

    def check(self) -> None:
        check_topic_part(self, "subtopic")


class TrackingConfig(_Section):
    """Faces -> tracks across frames (``agent.tracking``): steadier labels and per-person events."""

    enabled: bool = True
    iou_threshold: float = setting(default=0.2, ge=0.0, le=1.0)
    """A face joins a track when their boxes overlap at least this much (IoU) ..."""
    max_center_distance: float = setting(default=0.75, ge=0.0)
    """... or, failing that, when its centre is within this many track-box sizes (fast motion)."""
    max_missed: int = setting(default=10, ge=0)
    """A track ends after this many processed frames without its face."""
    min_hits: int = setting(default=2, ge=1)
    """Frames a track needs before its ``new`` event goes out (a one-frame false positive never does)."""
    ema_alpha: float = setting(default=0.3, gt=0.0, le=1.0)
    """Weight of the newest frame in the smoothed probabilities (1 = no smoothing)."""
    update_interval_s: float = setting(default=5.0, gt=0.0)
    """``update`` events: when a smoothed label changes, else at most this often (never per frame)."""
    update_min_gap_s: float = setting(default=1.0, ge=0.0)
    """Even label changes are reported at most this often per track (a label see-sawing on a tie)."""
    events_subtopic: str = "events"
    presence_subtopic: str = "presence"
    summary_subtopic: str = "summary"
    summary_interval_s: float = setting(default=60.0, ge=0.0)
    """Per-emotion/per-gender counts are published once per this period (0 = never)."""

    def check(self) -> None:
        for name in ("events_subtopic", "presence_subtopic", "summary_subtopic"):
            check_topic_part(self, name)


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery (one device, a few sensors). Needs the mqtt sink."""

    enabled: bool = True
    discovery: Literal["auto", "device", "entities"] = "auto"
    """``entities``: one config per entity, read by Home Assistant 2023.8 and later. ``device``: one
    config for the whole device, Home Assistant 2024.11 and later only. ``auto``: ``entities``, the
    form every Home Assistant in use reads (an MQTT client cannot learn Home Assistant's version)."""
    discovery_prefix: str = "homeassistant"
    status_topic: str = "homeassistant/status"
    """Home Assistant's birth topic: discovery is sent again when it says ``online``."""
    device_name: str | None = None
    """Defaults to ``facecast <device_id>``."""

    def check(self) -> None:
        check_topic_part(self, "discovery_prefix", root=True)
        check_topic_part(self, "status_topic", strip=False, root=True)


class PrivacyConfig(_Section):
    """What leaves the device (README "Privacy"): never pixels; per person or only counts; gender or not."""

    mode: Literal["events", "aggregate"] = "events"
    """``events``: frame events, per-person track events and presence, counts. ``aggregate``: only
    the per-interval counts of ``summary`` (every ``tracking.summary_interval_s``), each withheld
    below ``min_group_size``: nothing says what one person looked like or when they came and went."""
    gender: bool = True
    """``false``: no gender in any message (frames, tracks, presence, summaries), in Home Assistant or
    on the dashboard; the model still runs its gender head, whose output is dropped on the device."""
    min_group_size: int = setting(default=3, ge=2)
    """``aggregate``: a count below this (zero included, so a missing count tells nothing) is sent
    as null: a window with one angry person reads like a window with none."""


class DashboardConfig(_Section):
    """``facecast dashboard``: a local page fed by the broker (Server-Sent Events)."""

    host: str = "127.0.0.1"
    port: int = setting(default=8088, ge=0, le=65535)
    timeline_minutes: float = setting(default=5.0, gt=0.0)


class AgentConfig(_Section):
    """Root of the configuration: load it with :func:`agent.config.load_config`."""

    device_id: str = setting(default_factory=socket.gethostname)
    state_dir: Path = setting(default_factory=default_state_dir)
    source: SourceConfig = setting(default_factory=SourceConfig)
    detector: DetectorConfig = setting(default_factory=DetectorConfig)
    model: ModelConfig = setting(default_factory=ModelConfig)
    events: EventsConfig = setting(default_factory=EventsConfig)
    tracking: TrackingConfig = setting(default_factory=TrackingConfig)
    homeassistant: HomeAssistantConfig = setting(default_factory=HomeAssistantConfig)
    dashboard: DashboardConfig = setting(default_factory=DashboardConfig)
    privacy: PrivacyConfig = setting(default_factory=PrivacyConfig)
    sink: Literal["mqtt", "stdout"] = "mqtt"
    mqtt: MqttConfig = setting(default_factory=MqttConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def before(cls, name: str, value: Any) -> Any:
        if name == "source" and isinstance(value, str | int) and not isinstance(value, bool):
            # `source: /dev/video0` is the common case; the mapping form is for the rest.
            return {"uri": str(value)}
        if name == "source" and isinstance(value, Mapping) and "csi" in value and "uri" not in value:
            # `source: {csi: {...}}` alone means that camera (a uri from a flag or env still wins).
            return {**value, "uri": "csi"}
        if name == "log_level" and isinstance(value, str):
            return value.upper()
        return value

    def check(self) -> None:
        problem = part_problem(self.device_id, single_level=True)
        if problem is None and " " in self.device_id:
            problem = "must not contain spaces"
        if problem:
            raise SettingError(problem, field="device_id")
        self.state_dir = self.state_dir.expanduser()
        if self.privacy.mode == "aggregate" and not (
            self.tracking.enabled and self.tracking.summary_interval_s > 0
        ):
            raise SettingError(
                "aggregate counts people per tracking.summary_interval_s: it needs tracking.enabled "
                "and a summary_interval_s above 0",
                field="privacy.mode",
            )
        self._check_topic_lengths()

    def _check_topic_lengths(self) -> None:
        """Each piece may be fine and the joined topic still too long for MQTT's 2-byte length."""
        subtopics = {
            "events.subtopic": self.events.subtopic,
            "tracking.events_subtopic": self.tracking.events_subtopic,
            "tracking.presence_subtopic": self.tracking.presence_subtopic,
            "tracking.summary_subtopic": self.tracking.summary_subtopic,
            "device_id": "status",
        }
        for field, subtopic in subtopics.items():
            size = len(self.mqtt.topic(self.device_id, subtopic).encode("utf-8"))
            if size > MAX_TOPIC_BYTES:
                raise SettingError(
                    f"makes the topic {size} bytes long (topic_prefix/device_id/subtopic); "
                    f"MQTT allows at most {MAX_TOPIC_BYTES}",
                    field=field,
                )
        # Home Assistant's discovery topics carry the device id too, reduced to ASCII as
        # agent.homeassistant.discovery.node_id does; the longest is an entity's.
        node = "facecast_" + re.sub(r"[^a-zA-Z0-9_-]", "_", self.device_id)
        size = len(f"{self.homeassistant.discovery_prefix}/binary_sensor/{node}/occupancy/config".encode())
        if self.homeassistant.enabled and size > MAX_TOPIC_BYTES:
            raise SettingError(
                f"makes the discovery topic {size} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}",
                field="homeassistant.discovery_prefix",
            )
