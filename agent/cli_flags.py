"""The command line's flags as config keys: shared by ``facecast run`` and the extension commands.

Its own module so that :mod:`agent.cli` and :mod:`agent.cli_extensions` both read it and neither
imports the other's internals.
"""

from __future__ import annotations

import argparse
from typing import Any

FLAGS = {
    "source.uri": "--source",
    "device_id": "--device-id",
    "state_dir": "--state-dir",
    "model.path": "--model",
    "detector.name": "--detector",
    "source.max_width": "--max-width",
    "source.max_fps": "--max-fps",
    "log_level": "--log-level",
    "mqtt.host": "--mqtt-host",
    "mqtt.port": "--mqtt-port",
    "mqtt.username": "--mqtt-username",
    "mqtt.password_file": "--mqtt-password-file",
    "mqtt.tls.enabled": "--mqtt-tls",
    "mqtt.tls.ca_certs": "--mqtt-ca",
    "mqtt.topic_prefix": "--topic-prefix",
    "homeassistant.enabled": "--homeassistant",
    "sink": "--sink",
    "events.publish_empty": "--publish-empty",
}
"""Config key -> the flag that sets it, so a bad value's error names the flag."""


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags that were given, as dotted config keys (flags beat the file and the environment)."""
    ns = vars(args)
    sink = ns.get("sink")
    tls = ns.get("mqtt_tls")
    if tls is None and ns.get("mqtt_ca") is not None:
        tls = True  # a CA is only for TLS; --no-mqtt-tls still says otherwise
    return {
        "source.uri": ns.get("source"),
        "device_id": ns.get("device_id"),
        "state_dir": ns.get("state_dir"),
        "model.path": ns.get("model"),
        "detector.name": ns.get("detector"),
        "source.max_width": ns.get("max_width"),
        "source.max_fps": ns.get("max_fps"),
        "log_level": ns.get("log_level"),
        "mqtt.host": ns.get("mqtt_host"),
        "mqtt.port": ns.get("mqtt_port"),
        "mqtt.username": ns.get("mqtt_username"),
        "mqtt.password_file": ns.get("mqtt_password_file"),
        "mqtt.tls.enabled": tls,
        "mqtt.tls.ca_certs": ns.get("mqtt_ca"),
        "mqtt.topic_prefix": ns.get("topic_prefix"),
        "homeassistant.enabled": ns.get("homeassistant"),
        "sink": sink if sink in ("mqtt", "stdout") else None,
        "events.publish_empty": ns.get("publish_empty"),
    }
