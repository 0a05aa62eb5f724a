"""Engine construction for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import event

_encoder = msgspec.json.Encoder()
READ_ONLY = "sightline_read_only"
"""Execution option of a connection that only reads (:func:`read_connection`)."""


def _json_serializer(value: Any) -> str:
    return _encoder.encode(value).decode()


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine tuned for our write pattern: few, large transactions."""
    # A ping per checkout finds connections a server dropped; a SQLite file has no server.
    kwargs.setdefault("pool_pre_ping", sa.make_url(url).get_backend_name() != "sqlite")
    engine = sa.create_engine(
        url,
        json_serializer=_json_serializer,
        json_deserializer=msgspec.json.decode,
        **kwargs,
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI and the collector's key cache read while a worker writes;
    # synchronous=NORMAL in WAL mode is durable across process crashes (only an OS
    # crash can lose the last transactions), busy_timeout waits out a writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
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
