"""Home Assistant MQTT discovery: the agent appears as one device with a few sensors."""

from agent.homeassistant.discovery import HomeAssistantDiscovery, discovery_payload, discovery_topic

__all__ = ["HomeAssistantDiscovery", "discovery_payload", "discovery_topic"]
