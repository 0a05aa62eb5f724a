"""Engine construction for SQLite and PostgreSQL; the worker's WAL checkpointer and its
turns at SQLite's write lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import event

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
READ_ONLY = "sightline_read_only"
"""Execution option of a connection that only reads (:func:`read_connection`)."""

CHECKPOINT_SECONDS = 1.0
"""How often a worker's :class:`WalCheckpointer` moves SQLite's WAL into the database."""
FALLBACK_AUTOCHECKPOINT = 20_000
"""Pages (of 4 KiB) after which a writer with a background checkpointer checkpoints
itself anyway (the checkpointer stopped or cannot keep up); SQLite's default is 1,000."""
PING_AFTER_IDLE = 1.0
"""Seconds a pooled server connection may rest before a checkout pings it first."""
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes of WAL file kept after a checkpoint (the rest is truncated)."""
SQLITE_CACHE_KIB = 64 * 1024
"""SQLite's page cache per connection, in KiB (its default is 2 MiB). The events table's
indexes outgrow 2 MiB within minutes of traffic, after which every insert re-read index
pages from the file (``bench/worker.py``: 161 → 146 µs of CPU per event). Taken as pages
are used, not up front."""


def _json_serializer(value: Any) -> str:
    return _encoder.encode(value).decode()


def make_engine(url: str, *, background_checkpoint: bool = False, **kwargs: Any) -> sa.Engine:
    """An engine tuned for our write pattern: few, large transactions.

    ``background_checkpoint`` (SQLite; the worker's engine): commits leave checkpointing
    to a :class:`WalCheckpointer` thread instead of doing it themselves every 1,000 pages.
    """
    # A ping finds connections a server dropped (a SQLite file has no server), but only
    # after PING_AFTER_IDLE: a worker checks a connection out per batch, and a ping per
    # checkout was one round trip in every batch (~10 % of a PostgreSQL worker, py-spy).
    # A connection lost within that second fails its batch as an outage, which retries.
    server = sa.make_url(url).get_backend_name() != "sqlite"
    ping_after_idle = server and "pool_pre_ping" not in kwargs
    engine = sa.create_engine(
        url,
        json_serializer=_json_serializer,
        json_deserializer=msgspec.json.decode,
        **kwargs,
    )
    if ping_after_idle:
        event.listen(engine, "checkin", _checked_in)
        event.listen(engine, "checkout", partial(_ping_if_idle, engine.dialect))
    if engine.dialect.name == "sqlite":
        event.listen(
            engine,
            "connect",
            partial(_sqlite_pragmas, autocheckpoint=background_checkpoint),
        )
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dialect: Any, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """SQLAlchemy's pre-ping, for connections that rested (the documented recipe:
    a ``DisconnectionError`` makes the pool replace the connection and check out again)."""
    rested = record.info.get("checked_in_at")
    if rested is not None and time.monotonic() - rested < PING_AFTER_IDLE:
        return
    try:
        alive = dialect.do_ping(dbapi_connection)
    except Exception as exc:
        raise sa.exc.DisconnectionError(str(exc)) from exc
    if not alive:
        raise sa.exc.DisconnectionError("the connection did not answer a ping")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, autocheckpoint: bool) -> None:
    # WAL lets the CLI and the collector's key cache read while a worker writes;
    # synchronous=NORMAL in WAL mode is durable across process crashes (a commit does
    # not fsync; the WAL is fsynced at each checkpoint, so only an OS crash can lose
    # the transactions since the last one), busy_timeout waits out a writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    if autocheckpoint:
        cursor.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_AUTOCHECKPOINT}")
        cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    cursor.close()
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin: this
    # makes SAVEPOINT work (the documented pysqlite recipe).
    dbapi_connection.isolation_level = None


def read_connection(engine: sa.Engine) -> sa.Connection:
    """A connection for reads only: on SQLite its transactions are deferred (``BEGIN``),
    a snapshot of the database (WAL) that neither waits for a writer nor blocks one (a
    worker storing a batch). Never write on it: a deferred transaction that tries to
    write after another commit fails with "database is locked". Use it as ``with
    read_connection(engine) as conn: ...``."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def _sqlite_begin(conn: sa.Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
        return
    # IMMEDIATE takes the write lock up front, so two writers wait (busy_timeout)
    # instead of one failing with "database is locked" when it upgrades a read lock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class WalCheckpointer:
    """A thread that checkpoints a SQLite database's WAL every ``interval`` seconds.

    With SQLite's default, the commit that takes the WAL past 1,000 pages copies them
    into the database and fsyncs both files, in the worker's thread: measured, that made
    a quarter of a worker's time (``bench/worker.py``). Here the copy and the fsyncs
    happen on another connection in this thread (sqlite3 releases the GIL), overlapping
    the next batches; ``PASSIVE`` never blocks a writer or a reader. Since the WAL is
    fsynced at each checkpoint, what an OS crash or power cut can lose of the store is
    bounded by ``interval`` too (synchronous=NORMAL; a killed process loses nothing).
    """

    def __init__(self, path: str, interval: float = CHECKPOINT_SECONDS) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self.checkpoints = 0
        self.last: tuple[int, int, int] | None = None
        """``PRAGMA wal_checkpoint``'s answer: (busy, WAL frames, frames checkpointed)."""

    @classmethod
    def for_engine(
        cls, engine: sa.Engine, interval: float = CHECKPOINT_SECONDS
    ) -> WalCheckpointer | None:
        """A checkpointer for the engine's database if it is a SQLite file, else ``None``."""
        database = _sqlite_file(engine)
        return None if database is None else cls(database, interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        self.checkpoints += 1

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self._interval):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, isolation_level=None, timeout=10)
                    self.checkpoint(conn)
                except sqlite3.Error as exc:  # the writer checkpoints itself meanwhile
                    log.warning("could not checkpoint %s: %s", self._path, exc)
            if conn is not None:
                self.checkpoint(conn)  # what the last batches wrote, before we go
        except sqlite3.Error as exc:
            log.warning("could not checkpoint %s: %s", self._path, exc)
        finally:
            if conn is not None:
                conn.close()


def _sqlite_file(engine: sa.Engine) -> str | None:
    """The engine's SQLite database file, or ``None`` (another database, or in memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return str(url.database)


class WriterTurns:
    """The workers of one SQLite file taking turns at its write lock, waking as it is freed.

    SQLite lets one transaction write at a time, and one that finds the lock taken polls
    it (``busy_timeout``) at growing intervals, 100 ms apart after the first quarter of
    a second. A worker with a backlog commits a batch and begins its next within a
    millisecond or two, well inside those intervals: it took the lock again and again
    while the other worker's prepared batch, and its events, waited (``bench/e2e.py`` on
    SQLite, at ~7,500 req/s: the turns took accepted -> stored p99 from 1.9 to 1.2 s with
    under 2,000 envelopes queued, and the rate sustained from 6,251 to 6,999 req/s).
    Each worker holds an exclusive ``flock`` on a file beside the
    database (``<database>-writers.lock``) from before its ``BEGIN IMMEDIATE`` to after
    its commit: the kernel wakes the worker waiting on it the moment it is let go, and
    that one begins while the other is still finishing its round. Writers that do not
    take turns (the CLI, the maintenance thread) still wait on SQLite's lock as before.
    The lock dies with its process. The file takes the database's permission bits; a
    worker that cannot open it (another user's, a read-only directory) writes without
    turns, as before them, rather than failing its batches."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.path = f"{database}-writers.lock"
        self._threads = threading.Lock()  # one turn at a time in this process, too
        self._warned = False

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> WriterTurns | None:
        """Turns for the engine's database if it is a SQLite file, else ``None``."""
        database = _sqlite_file(engine)
        return None if database is None else cls(database)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for this worker's turn (no other process holds it), and hold it."""
        with self._threads:
            fd = self._open()
            if fd is None:
                yield
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # waits without the GIL
                yield
            finally:
                os.close(fd)  # lets the lock go

    def _open(self) -> int | None:
        try:
            mode = Path(self.database).stat().st_mode & 0o777
        except OSError:
            mode = 0o666  # the umask's
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, mode)
        except OSError as exc:
            if not self._warned:
                log.warning("writing %s without turns: %s", self.database, exc)
                self._warned = True
            return None
