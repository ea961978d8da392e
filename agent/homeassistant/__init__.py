"""Home Assistant MQTT discovery: the agent appears as one device with a few entities."""

from agent.homeassistant.discovery import HomeAssistantDiscovery, discovery_payload, discovery_topic, messages

__all__ = ["HomeAssistantDiscovery", "discovery_payload", "discovery_topic", "messages"]
