"""The worker's SQLite WAL is checkpointed by a thread of its own, within a deadline."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from sightline.store.db import FALLBACK_AUTOCHECKPOINT, WalCheckpointer, make_engine


def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}", background_checkpoint=True)
    checkpointer = WalCheckpointer.for_engine(engine, interval=0.05)
    assert checkpointer is not None
    checkpointer.start()
    try:
        with engine.begin() as conn:
            # The writer leaves checkpoints to the thread (bar a large fallback).
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
            assert pages == FALLBACK_AUTOCHECKPOINT
            conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
        for _ in range(20):
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (:v)"), [{"v": "x" * 500}] * 50)
        deadline = time.monotonic() + 30
        while True:
            last = checkpointer.last
            if last is not None and last[1] > 0 and last[1] == last[2]:
                break  # every frame of the WAL is in the database (and fsynced)
            assert time.monotonic() < deadline, f"never checkpointed: {last}"
            time.sleep(0.05)
    finally:
        checkpointer.stop()
        engine.dispose()


def test_no_checkpointer_for_postgresql_or_memory() -> None:
    assert WalCheckpointer.for_engine(sa.create_engine("sqlite://")) is None
    url = "postgresql+psycopg://u@127.0.0.1:1/x"
    assert WalCheckpointer.for_engine(sa.create_engine(url)) is None
