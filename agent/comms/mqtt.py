"""MQTT publisher with a durable buffer: nothing accepted is lost, and first delivery keeps order.

Delivery guarantee (QoS 1 events, the default for frames):

* ``publish()`` returns only after the event is committed to the on-disk buffer
  (:class:`~agent.comms.buffer.DiskBuffer`). From then on it survives a broker outage, a network
  outage, a clean restart and a SIGKILL of the agent. Only buffer overflow (the row or byte cap, or
  a full file system: drop-oldest, counted by reason in ``stats()["dropped_by_reason"]``) or losing
  the disk itself can lose it; an event that finds no room at all is dropped and counted the same.
* A single sender thread hands buffered rows to paho strictly in row order, at most
  ``max_inflight`` unacknowledged at a time. A row is deleted only when the broker's PUBACK for it
  arrives, so the guarantee is *at least once up to the broker's acknowledgement*. What the broker
  does after its PUBACK (e.g. loses it in its own crash without persistence) is the broker's part.
* After a reconnect, paho re-sends the unacknowledged in-flight messages first, in their original
  order, and the sender resumes with newer rows only once the broker acknowledged this connection's
  ``online`` status (paho processes that PUBACK after it queued the re-sends). So a subscriber sees
  every event at least once and the *first* sighting of each event is in publish order; duplicates
  (at most ``max_inflight`` per outage) are possible and are recognisable by the payload's ``seq``.
* After a restart of the agent, rows left on disk (never acknowledged) are sent first, before any
  event of the new run, because the queue is ordered by an autoincrement key.

A row whose topic can never be published (see :mod:`agent.config.topics`; e.g. stored under a bad
device id by an earlier version) is dropped with its reason and counted (``undeliverable``) instead
of being handed to paho: the broker would drop the connection on it after every reconnect, and
every event behind it would wait forever.

A failed connection attempt is classified (:mod:`agent.comms.connect_failure`) and logged with its
cause; while it persists, the cause is repeated at most once per ``report_every_s`` (a minute).
When the broker *refused* us (credentials, TLS verification, TLS against a plain port) and events
are left on disk at :meth:`MqttPublisher.close`, :meth:`MqttPublisher.undelivered_reason` says so,
so a bounded run can end non-zero instead of looking like a success.

QoS 0 messages (e.g. periodic stats) skip the buffer: they are sent if connected, otherwise dropped
and counted (``qos0_dropped``); they carry no ordering promise relative to QoS 1 events.

Availability follows Frigate's convention on ``<prefix>/<device_id>/status`` (all retained, QoS 1):
``online`` on every (re)connect, ``offline`` as the Last Will (broker-side, on an unclean loss), and
``stopped`` on a clean :meth:`MqttPublisher.close`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.comms import connect_failure
from agent.comms.buffer import BufferedMessage, DiskBuffer
from agent.comms.connect_failure import ConnectFailure
from agent.config.mqtt import MqttConfig
from agent.config.topics import part_problem, topic_problem
from agent.config.validation import Secret
from agent.log_redaction import hide_in_logs

logger = logging.getLogger(__name__)

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
STATUS_STOPPED = "stopped"

_ACK_FLUSH_BATCH = 256
"""Acknowledged rows are deleted in batches of this size (or sooner when the sender goes idle)."""
_ACK_FLUSH_INTERVAL_S = 0.05
_SENDER_IDLE_WAIT_S = 0.1
_ACK_RETRY_LIMIT = 10_000
"""Acknowledged rows kept for another delete attempt while the buffer cannot write."""
_STATUS_SLACK = 8
"""Extra paho in-flight slots beyond our window, so status messages never queue behind events."""
REPORT_EVERY_S = 60.0
"""A connection failure that persists is logged again at most this often (the cause, not a flood)."""


def encode_payload(payload: Mapping[str, Any] | str) -> bytes:
    """Compact JSON for mappings (NaN/Infinity rejected: they are not JSON), UTF-8 for strings."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def apply_credentials(client: mqtt.Client, cfg: MqttConfig) -> Secret | None:
    """Username/password and TLS from ``cfg`` (shared with other clients, e.g. the dashboard's).

    Returns the password it set, so the caller can keep it out of the logs. Raises
    ``OSError``/``ValueError`` for an unreadable password file or missing TLS files.
    """
    password = cfg.resolve_password()
    if cfg.username is not None or password is not None:
        client.username_pw_set(cfg.username, password.get_secret_value() if password else None)
    if cfg.tls.enabled:
        client.tls_set(
            ca_certs=str(cfg.tls.ca_certs) if cfg.tls.ca_certs else None,
            certfile=str(cfg.tls.certfile) if cfg.tls.certfile else None,
            keyfile=str(cfg.tls.keyfile) if cfg.tls.keyfile else None,
        )
        if cfg.tls.insecure:
            client.tls_insecure_set(True)
    return password


class MqttPublisher:
    """The MQTT implementation of :class:`~agent.comms.base.Publisher` (see the module docstring)."""

    def __init__(
        self, config: MqttConfig, device_id: str, state_dir: Path, *, report_every_s: float = REPORT_EVERY_S
    ) -> None:
        problem = part_problem(device_id, single_level=True)
        if problem:
            raise ValueError(f"device_id {device_id!r} {problem}")
        self._cfg = config
        self._device_id = device_id
        self._state_dir = state_dir
        self._status_topic = config.topic(device_id, "status")
        problem = topic_problem(self._status_topic)
        if problem:
            raise ValueError(f"status topic {self._status_topic!r} {problem}")
        self._window = config.max_inflight
        self._report_every_s = report_every_s

        self._buffer: DiskBuffer | None = None
        self._client: mqtt.Client | None = None
        self._sender: threading.Thread | None = None

        self._wake = threading.Event()
        self._stop_sender = threading.Event()
        self._acks: deque[int] = deque()
        # Owned by the sender thread (and by close() after the sender has been joined).
        self._inflight: dict[int, int] = {}
        self._acked_rows: list[int] = []
        self._ack_error_logged = False

        self._lock = threading.Lock()
        self._connected = False
        self._ready = False  # connected AND paho has re-queued the previous in-flight messages
        self._online_mid: int | None = None
        self._connects = 0
        # The last failed attempt (None once connected) and the last time a cause was logged.
        self._failure: ConnectFailure | None = None
        self._failures = 0
        self._reported: tuple[str, float, int] | None = None  # reason, when, self._failures then
        self._answered = False  # the broker answered this attempt's CONNECT (either way)
        self._closed = False
        self._left_on_close = 0
        self._published = 0
        self._rejected = 0
        self._undeliverable: dict[str, int] = {}
        self._qos0_published = 0
        self._qos0_dropped = 0
        self._subscriptions: dict[str, tuple[Callable[[str, bytes], None], int]] = {}

    # -- Publisher API -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the buffer and begin connecting in the background. Never raises for a dead broker.

        Raises ``OSError``/``ValueError`` for configuration that can never work (unreadable
        ``password_file``, missing TLS files) and ``sqlite3.Error`` for an unusable state dir.
        """
        if self._client is not None:
            raise RuntimeError("MqttPublisher.start() called twice")
        if self._closed:
            raise RuntimeError("MqttPublisher is closed")
        cfg = self._cfg
        # Configuration errors (unreadable password_file, missing CA file) raise here, before
        # anything is opened: those are for the operator to fix, unlike an unreachable broker.
        client, password = self._make_client()
        if password is not None:
            hide_in_logs(password.get_secret_value())
        self._buffer = DiskBuffer(
            cfg.buffer.resolve_path(self._state_dir), cfg.buffer.max_events, cfg.buffer.max_bytes
        )
        self._client = client
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        self._sender.start()
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        self._client.loop_start()
        logger.info(
            "MQTT publisher for %s -> %s:%d (MQTT %s%s), buffer %s (%d pending)",
            self._device_id,
            cfg.host,
            cfg.port,
            cfg.protocol,
            ", TLS" if cfg.tls.enabled else "",
            self._buffer.path,
            len(self._buffer),
        )

    def publish(
        self,
        subtopic: str,
        payload: Mapping[str, Any] | str,
        *,
        qos: int | None = None,
        retain: bool = False,
    ) -> None:
        """Accept one event for ``<prefix>/<device_id>/<subtopic>``.

        QoS 1: durable once this returns. QoS 0: sent now if connected, else dropped and counted.
        Raises ``ValueError`` for a topic MQTT cannot carry (see :func:`topic_problem`).
        """
        self.publish_topic(self._cfg.topic(self._device_id, subtopic), payload, qos=qos, retain=retain)

    def publish_topic(
        self,
        topic: str,
        payload: Mapping[str, Any] | str,
        *,
        qos: int | None = None,
        retain: bool = False,
    ) -> None:
        """Like :meth:`publish`, to a full topic outside ``<prefix>/<device_id>/`` (with the same
        guarantees): Home Assistant discovery lives under ``homeassistant/...``."""
        buffer = self._buffer
        if buffer is None or self._closed:
            raise RuntimeError("MqttPublisher is not started (or already closed)")
        problem = topic_problem(topic)
        if problem:
            raise ValueError(f"invalid topic {topic!r}: it {problem}")
        level = self._cfg.qos if qos is None else qos
        if level not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {level}")
        data = encode_payload(payload)
        if level == 0:
            self._publish_qos0(topic, data, retain)
            return
        buffer.append(topic, data, level, retain)
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Flush within ``timeout``, publish retained ``stopped``, disconnect; the rest stays on disk."""
        if self._closed:
            return
        self._closed = True
        client, buffer = self._client, self._buffer
        if client is None or buffer is None:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        while time.monotonic() < deadline and len(buffer) > 0:
            # Still connecting (a short run can end before the first CONNACK): worth waiting for.
            # A known outage (failed attempt or lost link): leave the rest on disk at once.
            if not self.is_connected() and self._failure is not None:
                break
            self._wake.set()
            time.sleep(0.01)

        self._stop_sender.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=max(1.0, deadline - time.monotonic()))

        if self.is_connected():
            info = client.publish(self._status_topic, STATUS_STOPPED, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                logger.warning("could not confirm the 'stopped' status: %s", exc)
            client.disconnect()  # a clean DISCONNECT: the broker discards the will
        elif self._connects:
            logger.info("closing while disconnected: the broker shows the 'offline' last will")
        else:
            logger.info("closing without ever having reached the broker")
        client.loop_stop()  # also ends paho's reconnect attempts
        # Late PUBACKs that arrived after the sender stopped still count: delete those rows too.
        self._collect_acks()
        self._flush_acks(buffer)
        left = len(buffer)
        dropped = buffer.dropped_by_reason
        buffer.close()
        with self._lock:
            self._connected = self._ready = False
            self._left_on_close = left
            failure = self._failure
            published = self._published
            # Every accepted event is delivered, kept on disk, or lost with a counted reason.
            lost_by = {
                **dropped,
                "rejected by the broker": self._rejected,
                "unpublishable": sum(self._undeliverable.values()),
            }
        lost = sum(lost_by.values())
        why = ", ".join(f"{k}: {v}" for k, v in lost_by.items() if v)
        if left:
            refused = failure is not None and failure.refused
            logger.warning(
                "MQTT publisher closed with %d event(s) kept on disk for the next run%s; %d delivered, "
                "%d dropped%s",
                left,
                f" (the broker refused the connection: {failure.reason})" if failure and refused else "",
                published,
                lost,
                f" ({why})" if lost else "",
            )
        elif lost:
            logger.warning(
                "MQTT publisher closed; %d event(s) delivered, %d dropped (%s)", published, lost, why
            )
        else:
            logger.info("MQTT publisher closed; all events delivered (%d event(s) delivered)", published)

    def undelivered_reason(self) -> str | None:
        """After :meth:`close`: one line if events stayed on disk because the broker refused us.

        None when everything went out, or when the broker was merely unreachable (the events wait
        on disk for the next run; that is the buffer doing its job, not a failure of the run).
        """
        with self._lock:
            failure, left = self._failure, self._left_on_close
        if not self._closed or failure is None or not failure.refused or not left:
            return None
        cfg = self._cfg
        return (
            f"MQTT broker {cfg.host}:{cfg.port} refused the connection: {failure.reason}; "
            f"{left} event(s) kept on disk for the next run"
        )

    def stats(self) -> dict[str, Any]:
        """Counters for health reporting. ``buffered`` includes events in flight (not yet acked)."""
        buffer = self._buffer
        with self._lock:
            return {
                "sink": "mqtt",
                "connected": self._connected,
                "published": self._published,
                # after close, what stayed on disk for the next run (``ha unregister`` reads it)
                "buffered": self._left_on_close
                if self._closed
                else (len(buffer) if buffer is not None else 0),
                "inflight": len(self._inflight),
                "dropped": buffer.dropped if buffer is not None else 0,
                "dropped_by_reason": buffer.dropped_by_reason if buffer is not None else {},
                "buffer_bytes": buffer.disk_bytes() if buffer is not None and not self._closed else 0,
                "rejected": self._rejected,
                "undeliverable": sum(self._undeliverable.values()),
                "undeliverable_reasons": dict(self._undeliverable),
                "connect_failures": self._failures,
                "last_connect_failure": self._failure.reason if self._failure else None,
                "reconnects": max(0, self._connects - 1),
                "qos0_published": self._qos0_published,
                "qos0_dropped": self._qos0_dropped,
            }

    # -- extras ----------------------------------------------------------------------------------

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1) -> None:
        """Call ``callback(topic, payload)`` (on paho's thread: keep it short) for messages on
        ``topic`` (a filter); re-subscribed on every reconnect. E.g. Home Assistant's birth message."""
        with self._lock:
            self._subscriptions[topic] = (callback, qos)
        client = self._client
        if client is not None and self.is_connected():
            client.subscribe(topic, qos)

    @property
    def status_topic(self) -> str:
        """``<prefix>/<device_id>/status``."""
        return self._status_topic

    def is_connected(self) -> bool:
        """Whether the broker accepted our connection (and has not dropped it since)."""
        with self._lock:
            return self._connected

    def __enter__(self) -> MqttPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _make_client(self) -> tuple[mqtt.Client, Secret | None]:
        cfg = self._cfg
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.effective_client_id(self._device_id),
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        paho_log = logging.getLogger(f"{__name__}.paho")
        if paho_log.isEnabledFor(logging.DEBUG):
            # Only when debugging: paho logs every broker restart as an ERROR, and our callbacks
            # already say what matters once per outage.
            client.enable_logger(paho_log)
        password = apply_credentials(client, cfg)
        client.will_set(self._status_topic, STATUS_OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(self._window + _STATUS_SLACK)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(cfg.reconnect_min_delay, cfg.reconnect_max_delay)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client, password

    def _publish_qos0(self, topic: str, data: bytes, retain: bool) -> None:
        client = self._client
        sent = False
        if client is not None and self.is_connected():
            sent = client.publish(topic, data, qos=0, retain=retain).rc == MQTTErrorCode.MQTT_ERR_SUCCESS
        with self._lock:
            if sent:
                self._qos0_published += 1
            else:
                self._qos0_dropped += 1

    def _note_failure(self, failure: ConnectFailure) -> None:
        """Remember why the last attempt failed; log it when it is new, else at most once per
        ``report_every_s`` (paho keeps retrying with backoff either way)."""
        now = time.monotonic()
        with self._lock:
            self._failure = failure
            self._failures += 1
            last = self._reported
            due = last is None or last[0] != failure.reason or now - last[1] >= self._report_every_s
            if due:
                self._reported = (failure.reason, now, self._failures)
        if not due:
            return
        cfg = self._cfg
        what = f"refused the connection: {failure.reason}" if failure.refused else failure.reason
        if last is None or last[0] != failure.reason:
            delays = f"{cfg.reconnect_min_delay}-{cfg.reconnect_max_delay}"
            tail = f"buffering events and retrying every {delays} s"
        else:
            buffer = self._buffer
            pending = len(buffer) if buffer is not None and not self._closed else 0
            attempts = self._failures - last[2]
            tail = (
                f"still failing: {attempts} more attempt(s) in the last {now - last[1]:.0f} s, "
                f"{pending} event(s) waiting on disk"
            )
        level = logging.ERROR if failure.refused else logging.WARNING
        logger.log(level, "MQTT broker %s:%d %s; %s", cfg.host, cfg.port, what, tail)

    # paho callbacks: they run on paho's network thread and must not block.

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        with self._lock:
            self._answered = False

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        cfg = self._cfg
        with self._lock:
            self._answered = True
        if reason_code.is_failure:
            # Bad credentials or a refused client id: paho retries with backoff; say why.
            self._note_failure(
                connect_failure.from_connack(reason_code, username=cfg.username, protocol=cfg.protocol)
            )
            return
        with self._lock:
            self._connected = True
            self._ready = False
            self._connects += 1
            reconnect = self._connects > 1
            after_failure = self._failure is not None
            self._failure = None
            self._reported = None
        pending = len(self._buffer) if self._buffer is not None else 0
        if reconnect or after_failure:
            logger.info("MQTT connected to %s:%d again; %d event(s) to deliver", cfg.host, cfg.port, pending)
        else:
            logger.info("MQTT connected to %s:%d", cfg.host, cfg.port)
        info = client.publish(self._status_topic, STATUS_ONLINE, qos=1, retain=True)
        self._online_mid = info.mid
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            logger.debug("publishing 'online' returned %s", info.rc)
        with self._lock:
            subscriptions = [(t, q) for t, (_cb, q) in self._subscriptions.items()]
        if subscriptions:
            client.subscribe(subscriptions)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            callbacks = [
                cb for t, (cb, _q) in self._subscriptions.items() if mqtt.topic_matches_sub(t, message.topic)
            ]
        for callback in callbacks:
            try:
                callback(message.topic, bytes(message.payload))
            except Exception:  # a subscriber's bug must not kill paho's network thread
                logger.exception("subscription callback for %s failed", message.topic)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError` around the attempt and passes no
        # exception, so the one being handled is the only place the cause (e.g. `unknown ca`) is.
        exc = sys.exc_info()[1]
        cfg = self._cfg
        self._note_failure(
            connect_failure.from_exception(
                exc, host=cfg.host, port=cfg.port, tls=cfg.tls.enabled, ca_certs=cfg.tls.ca_certs
            )
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected = self._connected
            answered = self._answered
            self._connected = self._ready = False
        if self._closed:
            return
        cfg = self._cfg
        if was_connected:
            logger.warning("MQTT connection lost (%s); buffering events and reconnecting", reason_code)
            with self._lock:
                self._failure = ConnectFailure(f"connection lost ({reason_code})", refused=False)
                self._reported = None  # the next failed attempt says why at once
        elif not answered:
            # e.g. plain MQTT sent to a TLS listener: the broker hangs up without a CONNACK.
            self._note_failure(connect_failure.closed_before_connack(port=cfg.port, tls=cfg.tls.enabled))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if mid == self._online_mid:
            # paho handled CONNACK (and re-queued the old in-flight messages, in order) before it
            # could read this PUBACK, so newer rows may go now without overtaking them.
            with self._lock:
                self._ready = self._connected
        elif reason_code.is_failure:
            with self._lock:
                self._rejected += 1
            logger.warning("broker rejected message %d: %s (not retried)", mid, reason_code)
        self._acks.append(mid)
        self._wake.set()

    # The sender thread.

    def _run_sender(self) -> None:
        """Drain the buffer in row order while ready. Survives any error: it must run for months."""
        buffer = self._buffer
        client = self._client
        assert buffer is not None and client is not None
        cursor = 0  # highest row id handed to paho in this process
        last_flush = time.monotonic()
        while True:
            self._wake.wait(_SENDER_IDLE_WAIT_S)
            self._wake.clear()
            try:
                self._collect_acks()
                now = time.monotonic()
                if self._acked_rows and (
                    len(self._acked_rows) >= _ACK_FLUSH_BATCH
                    or not self._inflight
                    or now - last_flush >= _ACK_FLUSH_INTERVAL_S
                ):
                    self._flush_acks(buffer)
                    last_flush = now
                if self._stop_sender.is_set():
                    self._flush_acks(buffer)
                    return
                cursor = self._send_more(client, buffer, cursor)
            except Exception:
                logger.exception("MQTT sender error; retrying in 1 s")
                time.sleep(1.0)

    def _send_more(self, client: mqtt.Client, buffer: DiskBuffer, cursor: int) -> int:
        """Hand the next rows after ``cursor`` to paho, up to the in-flight window; new cursor."""
        with self._lock:
            ready = self._ready
        room = self._window - len(self._inflight)
        if not ready or room <= 0:
            return cursor
        rows = buffer.peek(cursor, room, hold=True)
        for row in rows:
            # A row that can never be published must not wedge the queue: the broker would drop
            # the connection on it after every reconnect (paho re-sends it first each time).
            problem = topic_problem(row.topic)
            if problem is not None:
                problem = f"the topic {problem}"
            else:
                try:
                    info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                except ValueError as exc:  # e.g. a payload over MQTT's size limit
                    problem = f"the MQTT client refused it ({exc})"
            if problem is not None:
                self._drop_unpublishable(buffer, row, problem)
                cursor = row.id
                continue
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:  # cannot happen with an unbounded queue
                logger.error("paho refused to queue event %d; will retry", row.id)
                break
            # NO_CONN is fine: paho keeps the message and re-sends it, in order, on reconnect.
            self._inflight[info.mid] = row.id
            cursor = row.id
        if rows:
            self._wake.set()  # more may be waiting; loop again without sleeping
        return cursor

    def _drop_unpublishable(self, buffer: DiskBuffer, row: BufferedMessage, problem: str) -> None:
        """Delete a row that can never be published; log each reason once, count every row."""
        buffer.delete([row.id])
        with self._lock:
            seen = self._undeliverable.get(problem, 0)
            self._undeliverable[problem] = seen + 1
        log = logger.warning if seen == 0 else logger.debug
        log("dropping buffered event %d to %r, which can never be published: %s", row.id, row.topic, problem)

    def _collect_acks(self) -> None:
        acked = 0
        while self._acks:
            mid = self._acks.popleft()
            row = self._inflight.pop(mid, None)
            if row is not None:
                self._acked_rows.append(row)
                acked += 1
        if acked:
            with self._lock:
                self._published += acked

    def _flush_acks(self, buffer: DiskBuffer) -> None:
        if not self._acked_rows:
            return
        try:
            buffer.delete(self._acked_rows)
        except sqlite3.Error as exc:
            # E.g. a disk filled by someone else. Kept to retry (a few), else they stay on disk and
            # are re-sent after a restart: a duplicate, never a loss.
            if not self._ack_error_logged:
                logger.warning("deleting acknowledged rows from the MQTT buffer failed (%s); retrying", exc)
                self._ack_error_logged = True
            if len(self._acked_rows) < _ACK_RETRY_LIMIT:
                return
        except Exception:
            logger.exception("deleting acknowledged rows from the MQTT buffer failed")
        else:
            self._ack_error_logged = False
        self._acked_rows = []
