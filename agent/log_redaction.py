"""Keeps credentials out of every line the agent writes: log records, tracebacks, error lines.

Why a formatter rather than care at each call site: a URL reaches the log through many hands (an
exception's message, a third-party logger, a traceback at DEBUG), and one forgotten ``redact_url``
puts a camera's password into the journal. The formatter sees the final text of every record,
whoever logged it. Secrets that are not in a URL (the MQTT password) are registered once they are
known (:func:`hide_in_logs`) and masked wherever they would appear.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LEN = 4
"""Shorter registered secrets are not masked: replacing every "1" or "ab" would garble the log
while hiding nothing an attacker could not guess."""

# scheme://user:password@ ; the password runs to the LAST '@' of the authority (before / ? # or
# whitespace), as urllib reads it, so an unencoded '@' inside it is masked too.
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*):[^\s/?#]*@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``user:password@`` in URLs reduced to ``user:***@`` and each secret masked."""
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LEN:
            text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose output (message, traceback, stack) goes through :func:`redact`."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._secrets: tuple[str, ...] = ()  # replaced, never mutated: format() may run meanwhile

    def add_secret(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def hide_in_logs(secret: str, logger: logging.Logger | None = None) -> None:
    """Mask ``secret`` from now on in every line written by ``logger``'s (default: the root
    logger's) handlers that use a :class:`RedactingFormatter`."""
    for handler in (logger or logging.getLogger()).handlers:
        if isinstance(handler.formatter, RedactingFormatter):
            handler.formatter.add_secret(secret)
