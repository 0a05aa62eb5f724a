"""Faults with real processes: restarts, a database outage, a worker SIGKILLed mid-batch.

Workers run as ``python -m sightline worker`` subprocesses in their own session, so
the test can kill one (and, at the end, its scheduler child) by process group; the one
killed mid-batch is ``python -m tests.slow_worker``, the same worker holding each batch's
transaction open after writing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from rq.registry import FailedJobRegistry, StartedJobRegistry

from sightline.cli import main
from sightline.embedded import EmbeddedRedis
from sightline.ids import derived_id
from sightline.queue import make_queue
from sightline.settings import Settings
from sightline.store.products import create_product
from sightline.store.schema import events, users
from tests.harness import REDIS_TIMEOUT, System, running_system
from tests.jobs import JobWriter
from tests.load import wait_for
from tests.servers import PostgresServer
from tests.worker.test_batch import forged, queued_envelopes_all, requeue
from worker.jobs import OUTAGE_INTERVALS, outage_retry

ROOT = Path(__file__).resolve().parents[2]


def env_of(system: System, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": system.settings.redis_url or "",
        "DATABASE_URL": system.settings.sqlalchemy_url,
        "SIGHTLINE_DATA_DIR": str(system.settings.data_dir),
        **extra,
    }


@contextmanager
def worker_process(
    system: System, write_delay: float | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``sightline worker``; with ``write_delay``, one that sleeps that long inside each
    batch's transaction after writing the events (``tests/slow_worker.py``)."""
    command = ["-m", "sightline", "worker"]
    if write_delay is not None:
        command = ["-m", "tests.slow_worker", str(write_delay)]
    # Logs to a file: a pipe nobody reads would block a chatty worker (tracebacks).
    log = tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        env=env_of(system),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    LOGS[process.pid] = log
    try:
        yield process
    finally:
        # The process group: the worker and RQ's forked scheduler, alive or orphaned.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        del LOGS[process.pid]
        log.close()


LOGS: dict[int, IO[bytes]] = {}
"""The stderr of each running ``worker_process``."""


def _log(process: subprocess.Popen[bytes]) -> bytes:
    log = LOGS[process.pid]
    log.seek(0)
    return log.read()


def burst_worker(system: System) -> None:
    subprocess.run(
        [sys.executable, "-m", "sightline", "worker", "--burst"],
        cwd=ROOT,
        env=env_of(system),
        check=True,
        capture_output=True,
        timeout=60,
    )


def stored(system: System) -> int:
    try:
        return len(system.sql(sa.select(events.c.id)))
    except sa.exc.OperationalError:
        return -1


def track_batch(system: System, count: int, user: str = "u1") -> None:
    batch = [
        {"type": "track", "userId": user, "event": "E", "messageId": f"{user}-{i}"}
        for i in range(count)
    ]
    response = system.send("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text


def event_count_of(system: System, user: str) -> int:
    [row] = system.sql(sa.select(users.c.event_count).where(users.c.external_id == user))
    return int(row.event_count)


def test_dedup_survives_a_worker_restart(system: System) -> None:
    track_batch(system, 50)
    envelopes = queued_envelopes_all(system)
    burst_worker(system)
    requeue(system, envelopes)  # the same batch again, for a brand-new worker process
    burst_worker(system)
    ids = [r.message_id for r in system.sql(sa.select(events.c.message_id))]
    assert sorted(ids) == sorted(f"u1-{i}" for i in range(50))
    assert event_count_of(system, "u1") == 50
    assert system.status().duplicates == 50


def test_a_worker_killed_mid_batch_is_recovered_within_seconds(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    total = 400
    track_batch(system, total)
    started = StartedJobRegistry(system.settings.queue_name, connection=system.redis)
    # Worker A sleeps inside the batch's transaction, after writing the events.
    with worker_process(system, write_delay=60) as a:
        wait_for(lambda: started.count == 1, 30, "worker A starts the batch")
        time.sleep(1.0)  # well inside the transaction
        if system.engine.dialect.name == "postgresql":  # SQLite: A holds the write lock
            assert stored(system) == 0
        with worker_process(system) as b:
            time.sleep(2.0)  # B is up and idle: the one job is A's
            assert a.poll() is None and b.poll() is None
            killed_at = time.monotonic()
            os.kill(a.pid, signal.SIGKILL)
            recovery = wait_for(lambda: stored(system) == total, 30, "the batch is stored")
            time.sleep(0.5)
            assert b.poll() is None
    ids = [r.message_id for r in system.sql(sa.select(events.c.message_id))]
    lost = total - len(set(ids))
    duplicated = len(ids) - len(set(ids))
    assert (lost, duplicated) == (0, 0)
    assert event_count_of(system, "u1") == total
    assert system.queued_jobs() == 0
    assert FailedJobRegistry(system.settings.queue_name, connection=system.redis).count == 0
    with capsys.disabled():
        print(
            f"\n[SIGKILL mid-batch, {system.engine.dialect.name}] recovered in "
            f"{time.monotonic() - killed_at:.1f} s (stored {recovery:.1f} s after the kill); "
            f"lost {lost}, duplicated {duplicated}"
        )


def _restart(server: PostgresServer) -> None:
    server._run(
        shutil.which("pg_ctl") or "pg_ctl",
        "-D", str(server.datadir),
        "-l", str(server.workdir / "postgres.log"),
        "-o", f"-p {server.port} -k {server.sockdir} -c listen_addresses=127.0.0.1 "
              "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
              "-c max_connections=200",
        "-w", "start",
    )  # fmt: skip


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_down_while_jobs_run_then_every_event_is_stored(
    system: System,
    postgres_server: PostgresServer | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert postgres_server is not None
    alive = system.redis.keys("sightline:*:worker:*:alive")
    with worker_process(system) as worker:
        wait_for(
            lambda: len(system.redis.keys("sightline:*:worker:*:alive")) > len(alive),
            30,
            "the worker is up",
        )
        system.engine.dispose()
        postgres_server.stop()
        try:
            # As the collector enqueues them, but with a single retry for a raised error:
            # the outage outlasts it, so only the worker's outage policy (the job
            # returns an RQ Retry while the database is unreachable) keeps them going.
            writer = JobWriter(
                make_queue(system.redis, system.settings.queue_name),
                max_retries=1,
                job_timeout=60,
            )
            for n in range(5):
                writer.write(
                    [
                        forged(system, id=f"env-{n}-{i}", body={"userId": "u", "event": f"E{i}"})
                        for i in range(20)
                    ]
                )
            time.sleep(2.5)  # two attempts each (retries after 1 s, 2 s, 5 s, 10 s ...)
            assert worker.poll() is None, "the worker survives the outage"
        finally:
            _restart(postgres_server)
        back = time.monotonic()
        wait_for(lambda: stored(system) == 100, 40, "every event is stored")
        elapsed = time.monotonic() - back
    messages = [r.message_id for r in system.sql(sa.select(events.c.message_id))]
    assert len(messages) == len(set(messages)) == 100
    assert event_count_of(system, "u") == 100
    failed = FailedJobRegistry(system.settings.queue_name, connection=system.redis)
    assert failed.count == 0
    with capsys.disabled():
        print(f"\n[PostgreSQL down ~3 s] all 100 events stored {elapsed:.1f} s after it returned")


def test_outage_retries_span_the_configured_time() -> None:
    week = outage_retry(168)
    assert week.intervals == list(OUTAGE_INTERVALS)  # then the last, every 10 minutes
    spanned = sum(OUTAGE_INTERVALS) + (week.max - len(OUTAGE_INTERVALS)) * OUTAGE_INTERVALS[-1]
    assert 168 * 3600 <= spanned < 168 * 3600 + 600
    assert outage_retry(0).max == len(OUTAGE_INTERVALS)


def run_cli(system: System, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env_of(system), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_dead_letters_are_listed_and_replayed_idempotently(system: System) -> None:
    requeue(
        system,
        [
            forged(system, id="env-ok"),
            forged(system, id="env-later", product_id="prd_later"),
            forged(system, id="env-bad", body={"userId": "u"}),
        ],
    )
    system.work()
    listed = run_cli(system, "deadletters", "list")
    assert "unknown_product" in listed
    assert "schema" in listed
    with system.engine.begin() as conn:  # the product appears: its letter can now be stored
        create_product(conn, "Later", product_id="prd_later")
    first = run_cli(system, "deadletters", "replay")
    assert "1 stored" in first
    assert "1 dead again" in first
    run_cli(system, "deadletters", "replay")
    assert sorted(e.product_id for e in system.events()) == sorted([system.product.id, "prd_later"])


def test_nul_characters_are_stored_as_replacement_characters_on_postgresql(
    system: System,
) -> None:
    good: list[dict[str, Any]] = [
        {"type": "track", "userId": "u", "event": "E", "messageId": f"ok-{i}"} for i in range(9)
    ]
    bad = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "messageId": "nul",
        "properties": {"note": "a\u0000b"},
    }
    system.send("/v1/batch", {"batch": [*good[:4], bad, *good[4:]]})
    system.work()
    ids = {e.message_id for e in system.events()}
    assert ids == {f"ok-{i}" for i in range(9)} | {"nul"}
    [nul] = [e for e in system.events() if e.message_id == "nul"]
    if system.engine.dialect.name == "postgresql":  # no NUL in PostgreSQL text or JSON
        assert nul.properties == {"note": "a\ufffdb"}
    else:
        assert nul.properties == {"note": "a\u0000b"}
    assert system.dead_letters() == []
    assert system.queued_jobs() == 0


def test_garbage_envelopes_never_stop_the_worker(system: System) -> None:
    now = datetime.now(UTC).isoformat()
    garbage: list[Any] = [
        None,
        42,
        "text",
        [],
        {"v": 1},
        forged(system, id="g1", received_at="not a time"),
        forged(system, id="g2", body=None),
        forged(system, id="g3", body={"userId": "u", "event": "E", "context": "not a dict"}),
        forged(
            system,
            id="g4",
            body={
                "userId": "u",
                "event": "E",
                "timestamp": "9999-12-31T23:59:59Z",
                "sentAt": "0001-01-01T00:00:00Z",
            },
        ),
        forged(system, id="g5", ip="::ffff:300.1.1.1", user_agent="x" * 100_000, sent_at=now),
        forged(
            system,
            id="g6",
            body={
                "userId": "u",
                "event": "E",
                "context": {"page": {"url": "http://[::1", "referrer": "http://%"}},
            },
        ),
        forged(system, id="ok"),
    ]
    requeue(system, garbage)
    system.work()
    assert system.queued_jobs() == 0
    assert FailedJobRegistry(system.settings.queue_name, connection=system.redis).count == 0
    assert len(system.events()) + len(system.dead_letters()) == len(garbage)
    assert derived_id("ok", "0") in {e.message_id for e in system.events()}


def test_a_worker_waits_out_redis_dying_mid_batch(
    tmp_path: Path, sqlite_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Redis SIGKILLed while the worker holds a batch, and away until RQ gives up on it:
    the worker process stays, waits, and goes on once Redis (its append-only file) is
    back; the batch is stored once. No process manager restarts anything."""
    db = tmp_path / "faults.db"
    shutil.copyfile(sqlite_template, db)
    embedded = EmbeddedRedis(tmp_path / "redis")
    embedded.start()
    settings = Settings.from_env(
        {
            "REDIS_URL": embedded.url,
            "DATABASE_URL": f"sqlite:///{db}",
            "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
        }
    )
    try:
        with running_system(settings) as system, worker_process(system, write_delay=3) as worker:
            track_batch(system, 50)
            started = StartedJobRegistry(settings.queue_name, connection=system.redis)
            wait_for(lambda: started.count == 1, 30, "the worker starts the batch")
            assert embedded.pid is not None
            os.kill(embedded.pid, signal.SIGKILL)
            wait_for(lambda: embedded.exited() is not None, 10, "redis-server killed")
            # Away until the worker has given the job up (its commit done, RQ's own
            # bookkeeping failing past redis-py's retries): it says it waits.
            wait_for(
                lambda: worker.poll() is not None or b"waiting for Redis" in _log(worker),
                60,
                "the worker waits for Redis",
            )
            assert worker.poll() is None, _log(worker).decode(errors="replace")[-2000:]
            embedded = EmbeddedRedis(tmp_path / "redis")
            embedded.start()
            system.redis.connection_pool.disconnect()
            wait_for(lambda: stored(system) == 50 and system.queued_jobs() == 0, 45, "stored")
            track_batch(system, 5, user="after")
            wait_for(lambda: stored(system) == 55, 30, "a batch sent after")
            assert worker.poll() is None
            messages = [r.message_id for r in system.sql(sa.select(events.c.message_id))]
            failed = FailedJobRegistry(settings.queue_name, connection=system.redis).count
    finally:
        embedded.stop()
    assert len(messages) == len(set(messages)) == 55
    assert failed == 0
    with capsys.disabled():
        print("\n[Redis SIGKILL mid-batch, away past RQ's retries] worker waited, 55 stored once")
