"""The layers built on top of the frame stream, attached to a pipeline through its hooks.

Tracking (per-track events, presence, summaries) and Home Assistant discovery are optional and
configured in their own sections; keeping their wiring here leaves ``app.py`` with two calls
(attach before the run, close after it) however many layers are added.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.comms.base import Publisher
from agent.config import AgentConfig
from agent.homeassistant.discovery import HomeAssistantDiscovery, TopicClient
from agent.pipeline import Pipeline
from agent.stats import model_names
from agent.tracking.hook import TrackingHook

log = logging.getLogger(__name__)


@dataclass
class Extensions:
    tracking: TrackingHook | None = None
    discovery: HomeAssistantDiscovery | None = None

    def start(self) -> None:
        """After the publisher has started: announce the device to Home Assistant."""
        if self.discovery is not None:
            self.discovery.start()

    def close(self) -> None:
        """After the loop has ended, before the publisher closes: end open tracks."""
        if self.tracking is not None:
            self.tracking.close()


def attach_extensions(config: AgentConfig, pipeline: Pipeline, publisher: Publisher) -> Extensions:
    ext = Extensions()
    if config.tracking.enabled:
        ext.tracking = TrackingHook(
            config.tracking,
            publisher,
            device_id=config.device_id,
            boot_id=pipeline.seq.boot_id,
            privacy=config.privacy,
        )
        # First, so any caller-supplied on_faces hook already sees track ids and smoothed labels.
        pipeline.hooks.on_faces.insert(0, ext.tracking)
        pipeline.hooks.on_frame.insert(0, ext.tracking.publish)
    if config.homeassistant.enabled:
        if isinstance(publisher, TopicClient):
            version = model_names(pipeline).get("model_version")
            ext.discovery = HomeAssistantDiscovery(publisher, config, model_version=version)
        else:
            log.info("Home Assistant discovery needs the mqtt sink; skipped")
    return ext
