"""Faults under load, with real processes: every acknowledged event stored exactly once.

A load generator (``tests/load.py``) sends a few thousand track events with distinct
message ids to a real collector process while a fault strikes mid-load: Redis
SIGKILLed and restarted on its data dir (the embedded server's configuration:
``appendonly yes``, ``appendfsync everysec``), PostgreSQL restarted under the workers.
At the end, once the workers have drained the queue, the events stored are counted
against the answers: every 2xx stored once, nothing stored that was never sent, no job
in RQ's failed registry. An event answered 503 may have been stored (the collector
gave up waiting while Redis took it), at most once; how many is printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from rq.registry import FailedJobRegistry

from sightline.embedded import EmbeddedRedis
from sightline.store.db import make_engine
from sightline.store.products import ensure_default_product
from sightline.up import WorkerPool
from tests.load import QUEUE, Load, Stored, collector_process, settle, tally, wait_for
from tests.servers import PostgresServer, free_port


def test_redis_sigkilled_under_load_loses_no_acknowledged_event(
    tmp_path: Path, sqlite_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = f"sqlite:///{tmp_path / 'sightline.db'}"
    shutil.copyfile(sqlite_template, tmp_path / "sightline.db")
    engine = make_engine(database)
    with engine.begin() as conn:
        product, _ = ensure_default_product(conn)
    engine.dispose()
    redis_dir = data_dir / "redis"
    embedded = EmbeddedRedis(redis_dir)  # as `sightline up` runs it: AOF, fsync every second
    embedded.start()
    env = {
        **os.environ,
        "SIGHTLINE_DATA_DIR": str(data_dir),
        "REDIS_URL": embedded.url,
        "DATABASE_URL": database,
        "SIGHTLINE_REDIS_TIMEOUT": "1",
        "SIGHTLINE_QUEUE": QUEUE,
    }
    port = free_port()
    redis = Redis(unix_socket_path=str(embedded.socket), socket_timeout=2)
    stored = Stored(database)
    workers = WorkerPool(1, env)  # supervised as `sightline up` does: a dead one is replaced
    total = 3000
    load = Load(f"http://127.0.0.1:{port}", product.write_keys[0], total, per_request=4)
    try:
        workers.start()
        with collector_process(env, port):
            load.start()
            wait_for(lambda: load.answered >= total // 3, 40, "a third of the load answered")
            killed_at = load.answered
            assert embedded.pid is not None
            os.kill(embedded.pid, signal.SIGKILL)
            wait_for(lambda: embedded.exited() is not None, 10, "redis-server killed")
            time.sleep(0.5)  # the operator (or a supervisor) notices
            embedded = EmbeddedRedis(redis_dir)  # the same data dir: its append-only file
            embedded.start()
            load.join(60)
            loaded = time.monotonic()
            ids = settle(load, stored, redis, 45)
            drained_in = time.monotonic() - loaded
            failed = FailedJobRegistry(QUEUE, connection=redis).count
    finally:
        workers.stop()
        redis.close()
        stored.engine.dispose()
        embedded.stop()
    lost, duplicated, unknown, refused_stored = tally(load, ids)
    with capsys.disabled():
        print(
            f"\n[Redis SIGKILL at event ~{killed_at} of {total}] {len(load.acknowledged)} "
            f"acknowledged, {len(set(ids))} stored ({refused_stored} of them answered "
            f"otherwise), refused {dict(load.refused)}; lost {lost}, duplicated {duplicated}; "
            f"drained {drained_in:.1f} s after the load"
        )
    assert (lost, duplicated, unknown) == (0, 0, 0)
    assert failed == 0
    assert load.refused, "the kill was felt"


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_restarted_under_load_loses_and_doubles_nothing(
    mode: str,
    database_url: str,
    redis_url: str,
    postgres_server: PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert postgres_server is not None
    engine = make_engine(database_url)
    with engine.begin() as conn:
        product, _ = ensure_default_product(conn)
        # The suite's cluster trades durability for speed (synchronous_commit off): a
        # commit it answered may vanish in an immediate stop. PostgreSQL's default here.
        name = sa.make_url(database_url).database
        conn.execute(sa.text(f"ALTER DATABASE {name} SET synchronous_commit = on"))
    engine.dispose()
    env = {
        **os.environ,
        "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "SIGHTLINE_QUEUE": QUEUE,
    }
    port = free_port()
    redis = Redis.from_url(redis_url, socket_timeout=5)
    stored = Stored(database_url)
    workers = WorkerPool(2, env)
    total = 3000
    load = Load(f"http://127.0.0.1:{port}", product.write_keys[0], total, per_request=10)
    try:
        workers.start()
        with collector_process(env, port):
            wait_for(lambda: stored.message_ids() is not None, 10, "the database answers")
            load.start()
            wait_for(lambda: load.answered >= total // 3, 40, "a third of the load answered")
            restarted_at = load.answered
            postgres_server.restart(mode)
            load.join(60)
            loaded = time.monotonic()
            ids = settle(load, stored, redis, 45)
            drained_in = time.monotonic() - loaded
            failed = FailedJobRegistry(QUEUE, connection=redis).count
    finally:
        workers.stop()
        redis.close()
        stored.engine.dispose()
    lost, duplicated, unknown, refused_stored = tally(load, ids)
    with capsys.disabled():
        print(
            f"\n[PostgreSQL restart -m {mode} at event ~{restarted_at} of {total}] "
            f"{len(load.acknowledged)} acknowledged, {len(set(ids))} stored "
            f"({refused_stored} of them answered otherwise), refused {dict(load.refused)}; "
            f"lost {lost}, duplicated {duplicated}; drained {drained_in:.1f} s after the load"
        )
    assert (lost, duplicated, unknown) == (0, 0, 0)
    assert failed == 0
