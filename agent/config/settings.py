"""The agent's configuration model. Every section forbids unknown keys, so a typo fails loudly.

The ``mqtt`` section's type lives in :mod:`agent.config.mqtt` (owned by the comms side).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.config.mqtt import MqttConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def default_state_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` when run as a service, else the XDG state folder."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "facecast"


class SourceConfig(_Section):
    """Where frames come from. ``uri``: camera index, ``/dev/videoN``, URL, video file, folder,
    ``picamera2`` or ``demo``. ``max_width`` scales frames down before detection (0 = never)."""

    uri: str = "0"
    max_width: int = Field(default=640, ge=0)
    camera_width: int = Field(default=640, gt=0)
    camera_height: int = Field(default=480, gt=0)
    demo_frames: int = Field(default=300, gt=0)
    demo_fps: float = Field(default=0.0, ge=0.0)


class DetectorConfig(_Section):
    name: Literal["blazeface", "haar"] = "blazeface"
    model_path: Path | None = None
    range: Literal["short", "full", "auto"] = "auto"
    score_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    min_face_size: int = Field(default=0, ge=0)
    """Smallest face side, in pixels of the detection frame (after ``source.max_width``)."""
    tiles: int = Field(default=1, ge=1, le=6)
    num_threads: int = Field(default=1, ge=1, le=16)


class ModelConfig(_Section):
    """The emotion/gender model. ``path`` None = the installed ``facecast_models`` package."""

    path: Path | None = None
    num_threads: int = Field(default=1, ge=1, le=16)
    batch: bool = True
    """Classify all faces of a frame in one invoke when the runtime allows it."""


class EventsConfig(_Section):
    publish_empty: bool = False
    """Also publish frames with no face (useful as a liveness signal; costs bandwidth)."""
    subtopic: str = "frames"
    stats_interval_s: float = Field(default=60.0, ge=0.0)
    """Publish health counters on ``.../stats`` this often (0 = never)."""


class AgentConfig(_Section):
    """Root of the configuration: load it with :func:`agent.config.load_config`."""

    device_id: str = Field(default_factory=socket.gethostname)
    state_dir: Path = Field(default_factory=default_state_dir)
    source: SourceConfig = Field(default_factory=SourceConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    sink: Literal["mqtt", "stdout"] = "mqtt"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("source", mode="before")
    @classmethod
    def _source_shorthand(cls, value: Any) -> Any:
        # `source: /dev/video0` is the common case; the mapping form is for the rest.
        return {"uri": str(value)} if isinstance(value, str | int) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("device_id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not value or any(c in value for c in "/#+\x00 "):
            raise ValueError("device_id must be non-empty without '/', '#', '+' or spaces")
        return value

    @model_validator(mode="after")
    def _expand(self) -> AgentConfig:
        self.state_dir = self.state_dir.expanduser()
        return self
