"""A bounded, durable, ordered on-disk queue of outgoing MQTT messages (SQLite, WAL).

Why SQLite: it is in the standard library, a committed row survives a crash of the process (WAL +
``synchronous=NORMAL`` loses at most the last transactions on *power* loss, never on SIGKILL), and
an autoincrement key gives a total order that survives restarts. Rows are deleted only once the
broker acknowledged them, in batches, so the queue sustains thousands of events/s on a Pi-class CPU.

Bounds. The queue is capped in rows (``max_events``) and in bytes on disk (``max_bytes``, the
write-ahead log and its index included), because the partition under it (an SD card's data
partition, a tmpfs) is often smaller than any row count suggests. The WAL gets an eighth of the
budget, at most SQLite's usual 1000 pages (so a default-sized buffer checkpoints, and fsyncs, no
more often than stock SQLite); it is checkpointed at that size, truncated back to it, and no
transaction is allowed to be large (rows are deleted in slices). The main file gets the rest,
through ``PRAGMA max_page_count``.

A full file system is a bound too: when it has less room than the budget (its free space plus
what the buffer already holds), the same split is made of that room, minus a margin for the other
files there. On a tight disk new pages are checkpointed into the main file at once: pages that
exist only in the WAL need space to be checkpointed, and if someone else took it, the WAL could
never be reset again. If another process still takes the last byte, the WAL is truncated to give
its blocks back to the eviction.

When a bound is hit, the oldest rows are evicted (a recent frame is worth more than a stale one);
if even that frees no room, the new event is dropped. Every drop is counted by reason and reported
on a WARNING line when dropping starts, at most once per ``log_interval_s`` while it goes on, and
once when it ends: an outage of hours must not write a line per event.

A file that is not a database (a torn write on an SD card at power loss) is moved aside with a
time-stamped suffix and replaced by an empty buffer, so one bad file cannot keep a service down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.config.mqtt import BUFFER_MAX_BYTES, BUFFER_MIN_BYTES
from agent.errors import FacecastError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = BUFFER_MAX_BYTES  # why this figure: see agent.config.mqtt
MIN_MAX_BYTES = BUFFER_MIN_BYTES

DROP_REASONS = ("max_events", "max_bytes", "disk_full", "error")
"""Why events were dropped: the row cap, the byte cap, a (nearly) full file system, another
SQLite error (I/O error, a page that went bad). The first three evict the oldest rows first; the
new event itself is dropped only when no eviction makes room, and always for ``error``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL
)
"""

_EVICT = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id > ? ORDER BY id LIMIT ?)"
_SHM_BYTES = 32 * 1024  # the WAL index: 32 KiB per 4096 frames, and the WAL stays below that
_WAL_HEADER = 32
_WAL_FRAME_HEADER = 24
_TXN_PAGES = 16
"""Rows deleted per transaction (acknowledged or evicted) are about this many pages' worth: a
transaction writes every page it frees to the WAL, so an unbounded one would overrun it."""
_WAL_SLACK_FRAMES = 64
"""Frames of the transaction that crosses the checkpoint threshold: an insert is 2-3 pages, a
delete about ``_TXN_PAGES`` plus the pages above them (measured: 48 frames for 256 rows of 650 B)."""
_DISK_MARGIN = 256 * 1024
"""Left free on the file system for the other writers there (the seq file, the lock, logs)."""
_ROOM_STEP = 64 * 1024
"""The room on a tight disk is rounded down to this, so the caps do not change on every append."""
_MAX_EVICTIONS = 12
"""Eviction rounds per append (each evicts twice the rows of the last) before the event is dropped."""
# SQLite's primary result codes (sqlite3.h). Python 3.11 names them in the sqlite3 module and
# gives each error its code; Python 3.10 (JetPack 6) has neither, so the message stands in.
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 10, 11, 13, 26
_MESSAGE_CODES = {
    "disk i/o error": SQLITE_IOERR,
    "database disk image is malformed": SQLITE_CORRUPT,
    "database or disk is full": SQLITE_FULL,
    "file is not a database": SQLITE_NOTADB,
}
_FULL_CODES = frozenset({SQLITE_FULL})
_FULL_BELOW = 64 * 1024
"""Free bytes under which an SQLite I/O error is taken for a full disk."""
_CORRUPT_CODES = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})


class BufferOpenError(FacecastError):
    """The buffer file cannot be opened or created (the message names it)."""


class BufferNoSpaceError(BufferOpenError):
    """The file system under the buffer is full: not even an empty queue fits."""


@dataclass(frozen=True, slots=True)
class BufferedMessage:
    """One queued message; ``id`` orders the queue and survives restarts."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class _Budget:
    """How ``max_bytes`` is split between the main file, the WAL and its index."""

    page_size: int
    wal_pages: int
    wal_bytes: int
    db_pages: int

    @classmethod
    def split(cls, max_bytes: int, page_size: int, *, strict: bool = True) -> _Budget:
        """``strict``: refuse a budget too small to be useful (a configured one); otherwise (the
        room left on a filling disk) shrink to a minimal WAL and whatever pages remain."""
        wal_pages = min(1000, max(16, max_bytes // page_size // 8))
        wal_bytes = _WAL_HEADER + (wal_pages + _WAL_SLACK_FRAMES) * (page_size + _WAL_FRAME_HEADER)
        db_pages = (max_bytes - wal_bytes - _SHM_BYTES) // page_size
        if db_pages < 16 and strict:
            raise ValueError(f"max_bytes {max_bytes} is too small for a buffer (at least {MIN_MAX_BYTES})")
        return cls(page_size, wal_pages, wal_bytes, max(1, db_pages))


def _code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code (extended codes carry it in the low byte); before Python
    3.11, read from SQLite's message, which names the primary code's meaning."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(exc).lower()
    return next((c for message, c in _MESSAGE_CODES.items() if message in text), 0)


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _is_full(exc: sqlite3.Error, directory: Path) -> bool:
    """SQLITE_FULL, or an I/O error on a file system with no room left: SQLite reports a failed
    write to its WAL index (``-shm``) as "disk I/O error", not as full."""
    code = _code(exc)
    if code in _FULL_CODES:
        return True
    free = _free_bytes(directory)
    return code == SQLITE_IOERR and free is not None and free < _FULL_BELOW


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


class DiskBuffer:
    """Thread-safe FIFO of messages on disk, bounded in rows and bytes (drop-oldest).

    All methods may be called from any thread; one connection is shared under a lock (SQLite
    serialises writers anyway, and one connection keeps the WAL reader snapshot simple). Only one
    process may use a buffer file at a time: the agent holds a lock on its state directory.
    """

    def __init__(
        self,
        path: Path,
        max_events: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        log_interval_s: float = 60.0,
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be >= {MIN_MAX_BYTES}")
        self._path = path
        self._wal = Path(f"{path}-wal")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._log_interval = log_interval_s
        self._lock = threading.Lock()
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        # The current burst of drops, when a line was last logged and when the last drop was.
        self._burst = dict.fromkeys(DROP_REASONS, 0)
        self._logged_at = float("-inf")
        self._last_drop_at = 0.0
        self._applied: _Budget | None = None
        self._held_through = 0  # rows up to this id are with the MQTT client: never evicted
        self._cap_reason = "max_bytes"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create {path.parent} for the event buffer: {exc.strerror}"
            raise BufferOpenError(msg) from None
        self._db: sqlite3.Connection | None = self._open()
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._budget = _Budget.split(max_bytes, page_size)
        self._fit_caps(self._db)
        self._count: int = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        used = pages - int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        self._row_bytes = used * page_size // self._count if self._count else 1024
        if self._count > max_events:  # the cap was lowered since the last run
            self._note_drop("max_events", self._evict_oldest(self._db, self._count - max_events))
        if pages > self._budget.db_pages:
            logger.warning(
                "buffer %s is %s, above buffer.max_bytes (%s): it will not grow, and rows are "
                "evicted as needed",
                path,
                _mib(pages * page_size),
                _mib(max_bytes),
            )
        free = self._free_bytes()
        if free is not None and free + self.disk_bytes() < max_bytes + _DISK_MARGIN:
            logger.warning(
                "only %s free for the buffer in %s: it will hold less than buffer.max_bytes (%s)",
                _mib(max(0, free)),
                path.parent,
                _mib(max_bytes),
            )
        if self._count:
            logger.info("buffer %s holds %d undelivered event(s) from a previous run", path, self._count)

    # -- opening -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Open (or create) the file; a corrupt one is moved aside, a full disk is one clear error."""
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if _is_full(exc, self._path.parent):
                raise self._no_space(exc) from None
            if _code(exc) not in _CORRUPT_CODES:
                raise BufferOpenError(f"cannot open the event buffer {self._path}: {exc}") from None
            reason = str(exc)
        aside = self._move_aside()
        logger.error(
            "buffer %s is corrupt (%s): moved it aside to %s and starting with an empty buffer",
            self._path,
            reason,
            aside,
        )
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if _is_full(exc, self._path.parent):
                raise self._no_space(exc) from None
            raise BufferOpenError(f"cannot create the event buffer {self._path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self._path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()  # reads every page of the queue
            # A write now, so a full disk shows at start with a clear error, not at the first event.
            db.execute("PRAGMA user_version=1")
        except BaseException:
            db.close()
            raise
        return db

    def _no_space(self, exc: sqlite3.Error) -> BufferNoSpaceError:
        return BufferNoSpaceError(
            f"{self._path.parent} is full: no room to open the event buffer {self._path.name} ({exc}); "
            "free some space there"
        )

    def _move_aside(self) -> Path:
        """Rename the file (and its WAL, which must never be replayed into a new file) out of the way."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self._path.with_name(f"{self._path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            aside = self._path.with_name(f"{self._path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self._path, aside)
            if self._wal.exists():
                os.replace(self._wal, Path(f"{aside}-wal"))
            Path(f"{self._path}-shm").unlink(missing_ok=True)
        except OSError as exc:
            raise BufferOpenError(
                f"the event buffer {self._path} is corrupt and cannot be moved aside: {exc.strerror}"
            ) from None
        return aside

    # -- the queue -----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._path

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def dropped(self) -> int:
        """Events discarded (all reasons) since this object was created."""
        with self._lock:
            return sum(self._dropped.values())

    @property
    def dropped_by_reason(self) -> dict[str, int]:
        """Events discarded since this object was created, by reason (see ``DROP_REASONS``)."""
        with self._lock:
            return dict(self._dropped)

    def disk_bytes(self) -> int:
        """Bytes on disk now: the file, its WAL and the WAL index (what ``max_bytes`` bounds)."""
        return _size(self._path) + _size(self._wal) + _size(Path(f"{self._path}-shm"))

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def append(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> int | None:
        """Commit one message and return its id; once this returns an id, the row survives a crash.

        Returns None when the message was dropped (no room could be made, or SQLite failed): it is
        counted in ``dropped_by_reason`` and logged, never raised, so a full disk cannot stop the
        frame loop.
        """
        row = (topic, payload, qos, int(retain))
        with self._lock:
            db = self._conn()
            batch = max(16, self._count // 100)
            reason = "disk_full"
            for _ in range(_MAX_EVICTIONS):
                try:
                    self._fit_caps(db)
                    rowid = self._insert(db, row)
                except sqlite3.Error as exc:
                    self._settle(db)
                    if not _is_full(exc, self._path.parent):
                        self._note_drop("error", 1, new=True, detail=str(exc))
                        return None
                    reason = self._full_reason(db)
                    if reason == "disk_full":
                        self._release_wal(db)
                    evicted = self._evict_oldest(db, batch)
                    if evicted == 0:
                        break
                    self._note_drop(reason, evicted)
                    batch *= 2
                    continue
                if rowid is None:
                    self._note_drop("max_events", 1, new=True)
                    return None
                self._count += 1
                if self._cap_reason == "disk_full":
                    self._settle_growth(db)
                self._maybe_end_burst()
                return rowid
            self._note_drop(reason, 1, new=True)
            return None

    def peek(self, after_id: int = 0, limit: int = 100, *, hold: bool = False) -> list[BufferedMessage]:
        """Up to ``limit`` oldest rows with ``id > after_id``, in order. Does not remove them.

        ``hold``: the rows are about to be handed to the MQTT client, which keeps its own copy and
        re-sends it after a reconnect; from now on they are never evicted (they leave by
        :meth:`delete` once acknowledged). Evicting one would count as lost an event that is
        still delivered.
        """
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after_id, limit),
                )
                .fetchall()
            )
            if hold and rows:
                self._held_through = max(self._held_through, int(rows[-1][0]))
        return [BufferedMessage(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows; unknown ids (already dropped) are ignored. In transactions of a
        few pages' worth each: the WAL holds every page a transaction frees."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._lock:
            db = self._conn()
            step = min(500, self._rows_per_txn())
            deleted = 0
            for start in range(0, len(id_list), step):
                chunk = id_list[start : start + step]
                marks = ",".join("?" * len(chunk))
                db.execute("BEGIN IMMEDIATE")
                try:
                    n = db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
                    db.execute("COMMIT")
                except BaseException:
                    self._settle(db)
                    self._uncount(db, deleted)
                    raise
                deleted += n
            self._uncount(db, deleted)
            self._maybe_end_burst()
            return deleted

    def close(self) -> None:
        """Checkpoint the WAL and close. Safe to call twice."""
        with self._lock:
            if self._db is None:
                return
            if any(self._burst.values()):
                self._end_burst()
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # busy or a full disk: harmless, the WAL is replayed on open
                logger.debug("wal checkpoint skipped: %s", exc)
            self._db.close()
            self._db = None

    # -- internals (called with self._lock held) ---------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("buffer is closed")
        return self._db

    @staticmethod
    def _settle(db: sqlite3.Connection) -> None:
        """Roll back what is left of a failed transaction. SQLite has often rolled it back already
        (a full disk does that), and a ROLLBACK then would raise and hide the real error."""
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _insert(self, db: sqlite3.Connection, row: tuple[str, bytes, int, int]) -> int | None:
        """One transaction: evict past the row cap, insert. Drops are counted only once committed.
        None: the row cap is reached and every row is with the MQTT client (nothing to evict)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            evicted = 0
            overflow = self._count + 1 - self._max_events
            if overflow > 0:
                evicted = db.execute(_EVICT, (self._held_through, overflow)).rowcount
            if evicted < overflow:
                db.execute("ROLLBACK")
                return None
            cur = db.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)", row)
            db.execute("COMMIT")
        except BaseException:
            self._settle(db)
            raise
        if evicted:
            self._count -= evicted
            self._note_drop("max_events", evicted)
        # A running mean of the row size (with SQLite's per-row overhead) sizes delete transactions.
        self._row_bytes += (len(row[0]) + len(row[1]) + 24 - self._row_bytes) // 16
        rowid = cur.lastrowid
        assert rowid is not None
        return rowid

    def _rows_per_txn(self) -> int:
        return max(1, _TXN_PAGES * self._budget.page_size // max(1, self._row_bytes))

    def _evict_oldest(self, db: sqlite3.Connection, n: int) -> int:
        """Delete up to ``n`` oldest rows to make room; how many went (0: none, or even that failed)."""
        deleted = 0
        while deleted < n:
            try:
                db.execute("BEGIN IMMEDIATE")
                limit = min(n - deleted, self._rows_per_txn())
                step = db.execute(_EVICT, (self._held_through, limit)).rowcount
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._settle(db)
                logger.debug("evicting %d row(s) from %s failed: %s", n - deleted, self._path, exc)
                break
            if step <= 0:
                break
            deleted += step
        self._uncount(db, deleted)
        return deleted

    def _uncount(self, db: sqlite3.Connection, deleted: int) -> None:
        self._count -= deleted
        if self._count < 0:  # only if another process wrote to the file: trust the file, not us
            self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def _free_bytes(self) -> int | None:
        return _free_bytes(self._path.parent)

    def _fit_caps(self, db: sqlite3.Connection) -> None:
        """Size the WAL and cap the main file to the byte budget, or to less when the file system
        has less room: what is free there plus what the buffer already holds."""
        budget, reason = self._budget, "max_bytes"
        free = self._free_bytes()
        if free is not None and free < self._max_bytes + _DISK_MARGIN:  # else the budget binds first
            room = free + self.disk_bytes() - _DISK_MARGIN
            if room < self._max_bytes:
                room -= room % _ROOM_STEP  # steadier than the byte-exact figure
                budget, reason = _Budget.split(max(room, 0), budget.page_size, strict=False), "disk_full"
        if budget != self._applied:
            db.execute(f"PRAGMA wal_autocheckpoint={budget.wal_pages}")
            db.execute(f"PRAGMA journal_size_limit={budget.wal_bytes}")
            # SQLite never sets it below the current size: then only freed pages are reused.
            db.execute(f"PRAGMA max_page_count={budget.db_pages}")
            self._applied = budget
        self._cap_reason = reason

    def _settle_growth(self, db: sqlite3.Connection) -> None:
        """On a tight file system, write new pages into the main file at once. Pages that exist
        only in the WAL need space to be checkpointed; if someone else takes that space first, the
        WAL can never be reset and every later write fails until space is freed. Once they are in
        the file, evictions and inserts only reuse space the buffer already holds."""
        try:
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
            if pages * self._budget.page_size > _size(self._path):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next append tries again
            logger.debug("checkpoint of %s failed: %s", self._path, exc)

    def _release_wal(self, db: sqlite3.Connection) -> None:
        """Checkpoint and truncate the WAL: on a disk someone else filled, the blocks it gives back
        are the room the eviction needs (deleting rows is a write, and writes go to the WAL)."""
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            logger.debug("checkpoint of %s failed: %s", self._path, exc)

    def _full_reason(self, db: sqlite3.Connection) -> str:
        """``max_bytes`` when our own budget said no; ``disk_full`` when the file system did."""
        try:
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        except sqlite3.Error:
            return "disk_full"
        assert self._applied is not None
        return self._cap_reason if pages >= self._applied.db_pages else "disk_full"

    # -- reporting drops -----------------------------------------------------------------------

    def _note_drop(self, reason: str, n: int, *, new: bool = False, detail: str = "") -> None:
        """Count ``n`` drops; at most one WARNING line per ``log_interval_s`` (start, then progress)."""
        if n <= 0:
            return
        now = time.monotonic()
        quiet = not any(self._burst.values())
        self._dropped[reason] += n
        self._burst[reason] += n
        self._last_drop_at = now
        if now - self._logged_at < self._log_interval:
            return
        self._logged_at = now
        if quiet:
            logger.warning("%s", self._start_line(reason, new, detail))
        else:
            logger.warning(
                "buffer %s still dropping: %d event(s) in this burst (%s), %d since start",
                self._path,
                sum(self._burst.values()),
                self._reasons(self._burst),
                sum(self._dropped.values()),
            )

    def _start_line(self, reason: str, new: bool, detail: str) -> str:
        if reason == "error":
            return f"buffer {self._path}: cannot store an event ({detail}); dropping it"
        why = {
            "max_events": f"buffer.max_events {self._max_events}",
            "max_bytes": f"buffer.max_bytes {_mib(self._max_bytes)}",
            "disk_full": f"the file system of {self._path.parent} is full",
        }[reason]
        if new:
            return f"buffer {self._path}: no room for a new event ({why}); dropping it"
        return f"buffer {self._path} full ({why}): dropping the oldest events until the broker catches up"

    def _maybe_end_burst(self) -> None:
        """A burst ends after a quiet ``log_interval_s``: a queue hovering at its cap (a broker
        slower than the camera) is one long burst, not a start and an end line per batch."""
        if any(self._burst.values()) and time.monotonic() - self._last_drop_at >= self._log_interval:
            self._end_burst()

    def _end_burst(self) -> None:
        self._logged_at = time.monotonic()
        logger.warning(
            "buffer overflow ended: %d event(s) dropped in that burst (%s)",
            sum(self._burst.values()),
            self._reasons(self._burst),
        )
        self._burst = dict.fromkeys(DROP_REASONS, 0)

    @staticmethod
    def _reasons(counts: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
