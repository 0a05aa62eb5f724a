"""SQLite workers take turns at the write lock (``sightline.store.db.WriterTurns``): a
worker waiting for its turn wakes when the holder lets it go, and a worker's batch is
written inside its turn; the worker's reads beside a write do not wait for it."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from sightline.store.db import WriterTurns, make_engine
from tests.harness import System
from worker.batch import BatchProcessor, ProductCache
from worker.enricher import Enricher

WAITER = """
import sys
from sightline.store.db import WriterTurns
turns = WriterTurns(sys.argv[1])
print("waiting", flush=True)
with turns.turn():
    print("turn", flush=True)
    sys.stdin.readline()  # hold it until told
"""


def _line(process: subprocess.Popen[bytes], timeout: float) -> str | None:
    """The process's next line within ``timeout`` seconds, else ``None``. Its stdout is
    unbuffered (``bufsize=0``): a buffered reader could take two lines at once and leave
    ``select`` nothing to see for the second."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().decode().strip() if ready else None


def _waiter(database: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", WAITER, database],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert _line(process, 60) == "waiting"
    return process


def _let_go(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.write(b"\n")


def test_a_process_waits_for_the_turn_and_gets_it_when_let_go(tmp_path: Any) -> None:
    database = str(tmp_path / "store.db")
    turns = WriterTurns(database)
    with turns.turn():
        waiter = _waiter(database)
        try:
            assert _line(waiter, 0.5) is None, "took the turn while another process held it"
        except BaseException:
            waiter.kill()
            raise
    try:
        assert _line(waiter, 30) == "turn"
        # Now the other process holds it: this one waits in turn.
        taken = threading.Event()

        def take() -> None:
            with turns.turn():
                taken.set()

        thread = threading.Thread(target=take)
        thread.start()
        assert not taken.wait(0.5), "took the turn while another process held it"
        _let_go(waiter)
        assert taken.wait(30)
        thread.join(30)
    finally:
        waiter.kill()
        waiter.wait(30)


def test_a_lock_file_that_cannot_be_opened_leaves_writes_without_turns(tmp_path: Any) -> None:
    """The turns are for fairness: a worker that cannot open the lock file (here its
    directory is gone) writes as it did before them, instead of failing its batches."""
    turns = WriterTurns(str(tmp_path / "gone" / "store.db"))
    entered = []
    for _ in range(2):
        with turns.turn():
            entered.append(True)
    assert entered == [True, True]


def test_the_lock_file_takes_the_databases_permissions(tmp_path: Any) -> None:
    database = tmp_path / "store.db"
    database.touch(mode=0o640)
    database.chmod(0o640)
    with WriterTurns(str(database)).turn():
        pass
    assert (tmp_path / "store.db-writers.lock").stat().st_mode & 0o777 == 0o640 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_turns_for_sqlite_files_only() -> None:
    assert WriterTurns.for_engine(sa.create_engine("sqlite://")) is None
    assert WriterTurns.for_engine(sa.create_engine("postgresql+psycopg://u@127.0.0.1:1/x")) is None


def test_a_batch_is_written_in_the_workers_turn(system: System) -> None:
    """While another process holds the turn, a worker's batch waits for it (and is not
    stored); let go, the batch is stored."""
    turns = WriterTurns.for_engine(system.engine)
    if turns is None:
        pytest.skip("SQLite only: PostgreSQL takes concurrent writers")
    processor = BatchProcessor(make_engine(str(system.engine.url)), Enricher())
    r = system.send("/debug/v1/track", {"userId": "u1", "event": "Turned"})
    assert r.status_code == 200, r.text
    envelopes = r.json()["envelopes"]
    waiter = _waiter(str(system.engine.url.database))
    try:
        assert _line(waiter, 30) == "turn"
        stored: list[int] = []
        writing = threading.Thread(
            target=lambda: stored.append(processor.process(envelopes).stored)
        )
        writing.start()
        writing.join(0.5)
        assert writing.is_alive() and system.events() == [], "wrote outside its turn"
        _let_go(waiter)
        writing.join(30)
        assert stored == [1]
        assert [e.name for e in system.events()] == ["Turned"]
    finally:
        waiter.kill()
        waiter.wait(30)
        processor.engine.dispose()


def test_the_workers_product_cache_reads_while_a_batch_holds_the_write_lock(
    system: System,
) -> None:
    """The worker's product cache reloads in its prepare step, beside a batch being
    written: a snapshot read, never a wait for SQLite's write lock (a plain connection
    begins IMMEDIATE, and waited out the batch, or failed after busy_timeout)."""
    cache = ProductCache(system.engine)
    with system.engine.begin() as writing:  # on SQLite: BEGIN IMMEDIATE, the write lock
        writing.execute(sa.select(1))
        product = cache.get(system.product.id)
    assert product is not None and product.id == system.product.id
