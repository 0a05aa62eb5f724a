"""Reads never block the worker: on SQLite a read runs in a deferred transaction (a WAL
snapshot), not ``BEGIN IMMEDIATE`` (the write lock) as the writers do."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from sightline.store.db import read_connection
from sightline.store.lookups import read
from sightline.store.schema import events
from tests.harness import System

COUNT = sa.select(sa.func.count()).select_from(events)


def test_a_long_read_does_not_block_the_worker(system: System) -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []
    failed: list[BaseException] = []

    def long_read(conn: sa.Connection) -> None:
        seen.append(conn.execute(COUNT).scalar_one())
        started.set()
        assert release.wait(120)
        seen.append(conn.execute(COUNT).scalar_one())

    def reader() -> None:
        try:
            read(system.engine, long_read)
        except BaseException as exc:  # reported below
            failed.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        assert started.wait(60)
        r = system.send("/v1/track", {"userId": "u1", "event": "Stored while read"})
        assert r.status_code == 200
        # The worker's write transaction commits while the read is still open (with the
        # write lock held by the read it would wait out busy_timeout and fail).
        system.work()
        with read_connection(system.engine) as conn:
            assert conn.execute(COUNT).scalar_one() == 1
        assert thread.is_alive()
    finally:
        release.set()
        thread.join(120)
    assert not failed
    if system.engine.dialect.name == "sqlite":
        assert seen == [0, 0]  # a snapshot: the read never saw the write


def test_read_connections_begin_deferred_and_writers_immediate(system: System) -> None:
    if system.engine.dialect.name != "sqlite":
        return
    statements: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN"):
            statements.append(statement)

    sa.event.listen(system.engine, "before_cursor_execute", log)
    try:
        read(system.engine, lambda conn: conn.execute(COUNT).scalar_one())
        with system.engine.begin() as conn:
            conn.execute(COUNT)
    finally:
        sa.event.remove(system.engine, "before_cursor_execute", log)
    assert statements == ["BEGIN", "BEGIN IMMEDIATE"]
