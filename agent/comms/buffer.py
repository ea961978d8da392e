"""A bounded, durable, ordered on-disk queue of outgoing MQTT messages (SQLite, WAL).

Why SQLite: it is in the standard library, a committed row survives a crash of the process (WAL +
``synchronous=NORMAL`` loses at most the last transactions on *power* loss, never on SIGKILL), and
an autoincrement key gives a total order that survives restarts. Rows are deleted only once the
broker acknowledged them, in batches, so the queue sustains thousands of events/s on a Pi-class CPU.

When full, the oldest rows are dropped (a recent frame is worth more than a stale one); the drops
are counted and logged once per burst rather than once per row.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class BufferedMessage:
    """One queued message; ``id`` orders the queue and survives restarts."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class DiskBuffer:
    """Thread-safe FIFO of messages on disk, bounded to ``max_events`` rows (drop-oldest).

    All methods may be called from any thread; one connection is shared under a lock (SQLite
    serialises writers anyway, and one connection keeps the WAL reader snapshot simple).
    """

    def __init__(self, path: Path, max_events: int) -> None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self._path = path
        self._max_events = max_events
        # A burst ends (and is summarised in the log) once the queue drains 10% below the limit,
        # so a broker that is merely slower than the camera does not log on every batch.
        self._low_water = max_events - max(1, max_events // 10)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        row = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        self._count: int = int(row[0])
        self._dropped = 0
        self._burst_dropped = 0
        if self._count:
            logger.info("buffer %s holds %d undelivered event(s) from a previous run", path, self._count)

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    @property
    def dropped(self) -> int:
        """Rows discarded because the buffer was full, since this object was created."""
        with self._lock:
            return self._dropped

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def append(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> int:
        """Commit one message and return its id. Once this returns, the row survives a crash."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                overflow = self._count + 1 - self._max_events
                if overflow > 0:
                    deleted = db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                        (overflow,),
                    ).rowcount
                    self._count -= deleted
                    self._note_drop(deleted)
                elif self._burst_dropped and self._count < self._low_water:
                    self._end_burst()
                cur = db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                    (topic, payload, qos, int(retain)),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count += 1
            rowid = cur.lastrowid
            assert rowid is not None
            return rowid

    def peek(self, after_id: int = 0, limit: int = 100) -> list[BufferedMessage]:
        """Up to ``limit`` oldest rows with ``id > after_id``, in order. Does not remove them."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                )
                .fetchall()
            )
        return [BufferedMessage(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows in one transaction; unknown ids (already dropped) are ignored."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for start in range(0, len(id_list), 500):
                    chunk = id_list[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    deleted += db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count -= deleted
            if self._burst_dropped and self._count < self._low_water:
                self._end_burst()
            return deleted

    def close(self) -> None:
        """Checkpoint the WAL and close. Safe to call twice."""
        with self._lock:
            if self._db is None:
                return
            if self._burst_dropped:
                self._end_burst()
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a busy checkpoint is harmless: the WAL is replayed on open
                logger.debug("wal checkpoint skipped: %s", exc)
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("buffer is closed")
        return self._db

    def _note_drop(self, n: int) -> None:
        if n <= 0:
            return
        if not self._burst_dropped:
            logger.warning(
                "buffer full (%d events): dropping the oldest until the broker catches up", self._max_events
            )
        self._dropped += n
        self._burst_dropped += n

    def _end_burst(self) -> None:
        logger.warning("buffer overflow ended: %d oldest event(s) dropped in that burst", self._burst_dropped)
        self._burst_dropped = 0
