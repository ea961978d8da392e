"""Why a connection attempt to the broker failed, in words an operator can act on.

paho reports a failed attempt in three different ways: a CONNACK with a failure code (bad
password), an exception swallowed by its network loop (TLS verification, nothing listening), or a
connection the broker closes before it answers CONNECT (plain MQTT sent to a TLS listener). Left
as they are, they read as "unreachable" or as nothing at all.

The split that matters is :attr:`ConnectFailure.refused`: the broker (or its TLS layer) said no,
so retrying alone will not deliver anything until someone fixes the configuration; as opposed to
a broker that is down, busy or not reachable yet, which the agent simply waits for.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from paho.mqtt.reasoncodes import ReasonCode

# MQTT 5 reason codes (paho maps the 3.1.1 CONNACK codes onto them).
_UNSUPPORTED_PROTOCOL = 132
_CLIENT_ID_INVALID = 133
_BAD_CREDENTIALS = 134
_NOT_AUTHORIZED = 135
_BANNED = 138
_BAD_AUTH_METHOD = 140
_TRANSIENT = frozenset({136, 137, 151, 159})  # server unavailable/busy, quota, connection rate


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """One failed attempt: ``reason`` is one line for the log and for the CLI's error."""

    reason: str
    refused: bool
    """True when the broker or its TLS layer refused us: a configuration problem, not an outage."""


def from_connack(reason_code: ReasonCode, *, username: str | None, protocol: str) -> ConnectFailure:
    """The broker answered CONNECT with a failure code."""
    said = f"broker said {str(reason_code)!r}"
    value = reason_code.value
    if value in (_BAD_CREDENTIALS, _NOT_AUTHORIZED):
        if username is None:
            why = "no username was sent and this broker wants one (set mqtt.username and mqtt.password_file)"
        else:
            why = f"bad username or password for user {username!r}, or that user may not connect"
        return ConnectFailure(f"not authorised: {why} ({said})", refused=True)
    if value == _CLIENT_ID_INVALID:
        return ConnectFailure(f"client id rejected; check mqtt.client_id ({said})", refused=True)
    if value == _UNSUPPORTED_PROTOCOL:
        return ConnectFailure(f"MQTT {protocol} not accepted; check mqtt.protocol ({said})", refused=True)
    if value in (_BANNED, _BAD_AUTH_METHOD):
        return ConnectFailure(f"not allowed to connect ({said})", refused=True)
    if value in _TRANSIENT:
        return ConnectFailure(f"broker busy or unavailable ({said})", refused=False)
    return ConnectFailure(f"connection refused ({said})", refused=True)


def from_exception(
    exc: BaseException | None, *, host: str, port: int, tls: bool, ca_certs: Path | None
) -> ConnectFailure:
    """The attempt raised before any MQTT was exchanged (``exc`` None: paho did not say why)."""
    if exc is None:
        return ConnectFailure(f"unreachable{' (or the TLS handshake failed)' if tls else ''}", refused=False)
    failure = _tls_failure(exc, host=host, port=port, tls=tls, ca_certs=ca_certs)
    if failure is not None:
        return failure
    if isinstance(exc, ConnectionRefusedError):
        detail = "connection refused: is the broker running, on this port?"
    elif isinstance(exc, OSError):
        detail = exc.strerror or str(exc) or type(exc).__name__
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return ConnectFailure(f"unreachable ({detail})", refused=False)


def _tls_failure(
    exc: BaseException, *, host: str, port: int, tls: bool, ca_certs: Path | None
) -> ConnectFailure | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectFailure(_verify_failed(exc, host=host, ca_certs=ca_certs), refused=True)
    plain_port = (
        f"the broker closed the connection during the TLS handshake: is {port} a plain MQTT "
        "listener? TLS needs the broker's TLS port (often 8883)"
    )
    if isinstance(exc, ssl.SSLError):
        detail = exc.reason or str(exc)
        if isinstance(exc, ssl.SSLEOFError) or "WRONG_VERSION_NUMBER" in str(detail).upper():
            return ConnectFailure(f"TLS handshake failed ({detail}); {plain_port}", refused=True)
        return ConnectFailure(f"TLS handshake failed: {detail}", refused=True)
    if tls and isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        # TCP connected (else it would be ConnectionRefusedError), then the peer hung up on the
        # ClientHello: that is what a listener that does not speak TLS does.
        return ConnectFailure(plain_port, refused=True)
    return None


def closed_before_connack(*, port: int, tls: bool) -> ConnectFailure:
    """The broker accepted the connection and closed it without answering CONNECT."""
    hint = "" if tls else f"; is {port} a TLS listener? then set mqtt.tls.enabled (and mqtt.tls.ca_certs)"
    return ConnectFailure(f"the broker closed the connection without answering CONNECT{hint}", refused=True)


def _verify_failed(exc: ssl.SSLCertVerificationError, *, host: str, ca_certs: Path | None) -> str:
    message = exc.verify_message or exc.reason or str(exc)
    lowered = str(message).lower()
    trusted = f"mqtt.tls.ca_certs ({ca_certs})" if ca_certs else "the system's CA store"
    if "self-signed" in lowered or "self signed" in lowered or "issuer" in lowered or "unknown ca" in lowered:
        hint = f"unknown CA: the broker's certificate is not signed by a CA in {trusted}"
    elif "mismatch" in lowered or "not valid for" in lowered or "match" in lowered:
        hint = (
            f"the broker's certificate is not issued for {host!r}: connect by a name it lists "
            "(mqtt.host) or fix the certificate"
        )
    elif "expired" in lowered or "not yet valid" in lowered:
        hint = "check the broker's certificate dates and this device's clock"
    else:
        hint = f"checked against {trusted}"
    return f"TLS certificate verify failed: {message} ({hint})"
