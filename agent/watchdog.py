"""systemd notification (``Type=notify``, ``WatchdogSec=``) without the libsystemd binding.

The protocol is one datagram per message to the UNIX socket in ``$NOTIFY_SOCKET``. Outside systemd
(no socket in the environment) every call is a cheap no-op, so the agent calls it unconditionally.
The watchdog ping hangs off the pipeline's ``heartbeat`` hook, which turns at least once a second
even while a live camera is gone: systemd restarts the agent only if the loop itself is stuck.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends ``READY=1``, ``STOPPING=1``, ``STATUS=...`` and rate-limited ``WATCHDOG=1``."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is given as "@name" and addressed with a leading NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        # Ping at half the deadline, as sd_watchdog_enabled(3) recommends.
        self._interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self._clock = clock
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    @property
    def watchdog_interval(self) -> float | None:
        return self._interval

    def notify(self, message: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
            return True
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message, exc)
            return False

    def ready(self) -> None:
        self.notify("READY=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def heartbeat(self) -> None:
        """The pipeline hook: ``WATCHDOG=1`` at most every half watchdog period."""
        if self._interval is None:
            return
        now = self._clock()
        if now - self._last_ping >= self._interval:
            self._last_ping = now
            self.notify("WATCHDOG=1")
