"""Configuration: validated sections (``AgentConfig`` is the root) and the file/env/flags loader."""

from agent.config.loader import dump_yaml, load_config, masked_dump
from agent.config.mqtt import MqttConfig
from agent.config.settings import (
    AgentConfig,
    DetectorConfig,
    EventsConfig,
    ModelConfig,
    SourceConfig,
    default_state_dir,
)

__all__ = [
    "AgentConfig",
    "DetectorConfig",
    "EventsConfig",
    "ModelConfig",
    "MqttConfig",
    "SourceConfig",
    "default_state_dir",
    "dump_yaml",
    "load_config",
    "masked_dump",
]
