"""Where events go: MQTT (with an on-disk buffer) or stdout. All behind ``Publisher``."""
