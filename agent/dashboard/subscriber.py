"""The dashboard's MQTT side: one paho client subscribed to every device's state topics.

Uses the agent's ``mqtt`` config section (host, port, credentials, TLS, topic prefix), so the
dashboard reaches the same broker the agents publish to with the same file.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.comms.mqtt import apply_credentials
from agent.config.mqtt import MqttConfig
from agent.dashboard.state import KINDS, DashboardState

log = logging.getLogger(__name__)


class DashboardSubscriber:
    def __init__(self, config: MqttConfig, state: DashboardState) -> None:
        self._cfg = config
        self._state = state
        self._prefix = config.topic_prefix
        client_id = f"facecast-dashboard-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        apply_credentials(client, config)
        client.reconnect_delay_set(1, 2)  # short: loop_stop() waits out a pending back-off
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    def start(self) -> None:
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=30)
        self._client.loop_start()
        log.info("dashboard subscribing to %s/+/... on %s:%d", self._prefix, self._cfg.host, self._cfg.port)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the dashboard: %s", reason)
            return
        client.subscribe([(f"{self._prefix}/+/{kind}", 1) for kind in KINDS])
        self._state.set_broker(True)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.info("dashboard lost the broker (%s); reconnecting", reason)
        self._state.set_broker(False)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Never raises: an exception here would end paho's network thread, and with it every
        update, while the page still showed "broker connected"."""
        parts = msg.topic[len(self._prefix) + 1 :].split("/")
        if len(parts) != 2:
            return
        try:
            self._state.update(parts[0], parts[1], bytes(msg.payload))
        except Exception as exc:  # a reader's bug: count it like a malformed message, keep going
            log.warning("dashboard could not handle %s", msg.topic, exc_info=True)
            self._state.skip(parts[0], parts[1], f"{type(exc).__name__}: {exc}")
