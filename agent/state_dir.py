"""One agent per state directory, enforced by an OS lock on ``<state_dir>/agent.lock``.

Two agents on one directory (a manual ``facecast run`` beside the service) would share the event
buffer and the seq file: each deletes rows the other sent, seq numbers repeat, and both connect
with the same MQTT client id and knock each other off the broker. ``flock`` is released by the
kernel however the holder ends (SIGKILL, power loss), so a stale lock never blocks a restart; the
pid written into the file is only there to tell the second agent whom it met.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from pathlib import Path
from types import TracebackType

from agent.errors import FacecastError

log = logging.getLogger(__name__)

LOCK_FILE = "agent.lock"


class StateDirBusyError(FacecastError):
    """Another agent holds the state directory."""


class StateDirFullError(FacecastError):
    """The state directory's file system has no room left."""


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def full_error(state_dir: Path, what: str, exc: OSError) -> StateDirFullError:
    return StateDirFullError(
        f"state_dir {state_dir} is full ({exc.strerror}): cannot write {what}; free some space there"
    )


class StateDirLock:
    """Held from :meth:`acquire` to :meth:`release` (or as a context manager)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> StateDirLock:
        """Take the lock at once or raise :class:`StateDirBusyError` naming the holder's pid."""
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if is_disk_full(exc):
                raise full_error(self.state_dir, LOCK_FILE, exc) from None
            raise FacecastError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "a process that has not written its pid yet"
            raise StateDirBusyError(
                f"state_dir {self.state_dir} is in use by another facecast agent ({who}); stop it "
                "(e.g. systemctl stop facecast) or give this run its own --state-dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            if is_disk_full(exc):
                raise full_error(self.state_dir, LOCK_FILE, exc) from None
            raise FacecastError(f"cannot write {self.path}: {exc.strerror}") from None
        self._fd = fd
        log.debug("locked %s", self.path)
        return self

    def release(self) -> None:
        """Let the next agent in. The file stays: removing it would race with one opening it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # only cosmetic: the pid of an agent that has gone
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> StateDirLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The holder's pid; it may be a moment between its flock and its write, so look twice."""
    for _ in range(5):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    return None
