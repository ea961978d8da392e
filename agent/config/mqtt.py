"""MQTT connection settings, validated strictly so a typo in the YAML fails at start, not at 3 a.m.

Self-contained on purpose: it imports nothing from ``agent.config`` itself, so the root config can
embed :class:`MqttConfig` without an import cycle.

The password is a :class:`~agent.config.validation.Secret`, so ``repr``/``str``/``to_dict`` never
show it.
For systemd units, prefer ``LoadCredential=mqtt_password:/etc/facecast/mqtt_password``: when
``$CREDENTIALS_DIRECTORY/mqtt_password`` exists it is used (see :meth:`MqttConfig.resolve_password`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from agent.config.topics import part_problem
from agent.config.validation import Secret, Section, SettingError, setting

CREDENTIAL_NAME = "mqtt_password"
"""File name looked up in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``)."""


BUFFER_MAX_BYTES = 32 * 1024 * 1024
"""32 MiB holds about 39,000 frame events as the agent publishes them (670 bytes of JSON on
average, ~850 bytes each on disk with SQLite's pages and the WAL's share, measured): over an hour of
a face in every frame at the 10 fps the Ansible role sets. Small enough for a small SD card data
partition or the RAM-backed overlay root of a 1 GB Raspberry Pi, where the 100,000-event row cap
(~85 MB of such events) would not fit."""
BUFFER_MIN_BYTES = 1024 * 1024
"""Below this the WAL's share leaves too few pages for a useful queue."""

_SIZE_UNITS: Mapping[str, int] = MappingProxyType(
    {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
)


def parse_size(text: str) -> int:
    """``"32MiB"`` -> 33554432; also KiB/GiB, kB/MB/GB and plain bytes (environment variables are
    text). Anything else is a :class:`SettingError` that shows the value."""
    raw = text.strip()
    digits = raw.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
    unit = raw[len(digits) :].strip().lower()
    try:
        number = float(digits)
    except ValueError:
        number = -1.0
    if unit not in _SIZE_UNITS or number < 0 or not digits:
        raise SettingError(f"must be a size in bytes such as 33554432 or '32MiB', got {text!r}")
    return int(number * _SIZE_UNITS[unit])


class MqttTlsConfig(Section):
    """TLS for the broker connection. ``insecure`` skips host-name checks (self-signed test setups)."""

    enabled: bool = False
    ca_certs: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = False

    def check(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise SettingError("keyfile is set but certfile is not", field="keyfile")


class BufferConfig(Section):
    """The on-disk queue that holds accepted events until the broker acknowledges them."""

    max_events: int = setting(default=100_000, ge=1)
    max_bytes: int = BUFFER_MAX_BYTES
    """On-disk size cap, write-ahead log included (the oldest events go first). Bytes, or a size
    such as ``64MiB``; why 32 MiB: see :data:`BUFFER_MAX_BYTES`."""
    path: Path | None = None
    """Defaults to ``<state_dir>/buffer.sqlite3`` (see :meth:`resolve_path`)."""

    @classmethod
    def before(cls, name: str, value: object) -> object:
        if name == "max_bytes" and isinstance(value, str):
            return parse_size(value)
        return value

    def check(self) -> None:
        if self.max_bytes < BUFFER_MIN_BYTES:  # here, not as a bound: that would print 1.04858e+06
            raise SettingError(f"must be at least 1MiB (1048576), got {self.max_bytes}", field="max_bytes")

    def resolve_path(self, state_dir: Path) -> Path:
        """Where the buffer lives: the explicit ``path`` or the default under ``state_dir``."""
        return self.path if self.path is not None else state_dir / "buffer.sqlite3"


class MqttConfig(Section):
    """Everything needed to reach the broker and to lay out topics.

    Topics are ``<topic_prefix>/<device_id>/<subtopic>``; availability is ``.../status``.
    """

    host: str = "127.0.0.1"
    port: int = setting(default=1883, ge=1, le=65535)
    client_id: str | None = None
    """Defaults to ``facecast-<device_id>`` (see :meth:`effective_client_id`)."""
    keepalive: int = setting(default=60, ge=5, le=65535)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    username: str | None = None
    password: Secret | None = None
    password_file: Path | None = None
    tls: MqttTlsConfig = setting(default_factory=MqttTlsConfig)
    topic_prefix: str = "facecast"
    qos: int = setting(default=1, ge=0, le=1)
    """QoS for frame events. 1 = through the durable buffer; 0 = best effort, never buffered."""
    reconnect_min_delay: int = setting(default=1, ge=1)
    """Seconds before the first reconnect attempt; doubles per failure up to the max."""
    reconnect_max_delay: int = setting(default=30, ge=1)
    max_inflight: int = setting(default=64, ge=1, le=65000)
    """QoS 1 messages sent but not yet acknowledged. Bounds duplicates after a reconnect."""
    buffer: BufferConfig = setting(default_factory=BufferConfig)

    @classmethod
    def before(cls, name: str, value: object) -> object:
        if name == "protocol" and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # YAML reads `protocol: 5` as an int and `protocol: 3.1.1` as text
        return value

    def check(self) -> None:
        self.topic_prefix = self.topic_prefix.strip("/")
        problem = part_problem(self.topic_prefix)
        if problem:
            raise SettingError(problem, field="topic_prefix")
        if self.topic_prefix.startswith("$"):
            raise SettingError(
                "must not start with '$': such topics belong to the broker (e.g. $SYS), "
                "which accepts the events and delivers them to no subscriber",
                field="topic_prefix",
            )
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise SettingError("must be >= reconnect_min_delay", field="reconnect_max_delay")

    def effective_client_id(self, device_id: str) -> str:
        """The MQTT client id: explicit, or derived from the device id so it is stable across runs."""
        return self.client_id or f"facecast-{device_id}"

    def topic(self, device_id: str, subtopic: str) -> str:
        """``<prefix>/<device_id>/<subtopic>``."""
        return f"{self.topic_prefix}/{device_id}/{subtopic.strip('/')}"

    def resolve_password(self, environ: Mapping[str, str] | None = None) -> Secret | None:
        """The password to use, read at start (so a rotated secret is picked up on restart).

        Order: ``password``; then ``$CREDENTIALS_DIRECTORY/mqtt_password`` when systemd handed one
        over (``LoadCredential=``; under ``DynamicUser=`` the original, root-only file named by
        ``password_file`` is typically unreadable, and the credential is the copy meant for this
        service); then ``password_file``. A trailing newline is stripped. Raises ``OSError`` if
        the chosen file is unreadable: a misconfigured secret should stop the service loudly,
        not silently connect anonymously.
        """
        if self.password is not None:
            return self.password
        env = os.environ if environ is None else environ
        cred_dir = env.get("CREDENTIALS_DIRECTORY")
        if cred_dir:
            cred = Path(cred_dir) / CREDENTIAL_NAME
            if cred.is_file():
                return Secret(cred.read_text(encoding="utf-8").rstrip("\r\n"))
        if self.password_file is not None:
            return Secret(self.password_file.read_text(encoding="utf-8").rstrip("\r\n"))
        return None
