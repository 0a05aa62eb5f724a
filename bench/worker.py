"""Worker throughput against the storage limit, measured in the same run.

    python bench/worker.py [--events 60000] [--batch-size 64] [--database-url URL]
                           [--worker-max-events 2000]

Generates realistic native events (bench/workload.py), enqueues them as the
collector would (one RQ job per group-commit batch), runs ONE worker in burst
mode with all enrichment on (the backlog is all queued: the worker stores whole jobs
up to ``--worker-max-events`` envelopes per transaction), then times the database's
fastest bulk load of the very rows the worker stored into an empty copy of the same
table (SQLite: plain ``executemany``; PostgreSQL: ``COPY``), committing as often as the
worker does (``rows_per_commit``).
Prints one JSON line; ``worker_cpu_us_per_event`` is the worker process's CPU time
(all its threads) per stored event, which moves less than the rate on a shared machine;
``server_cpu_us_per_event`` the PostgreSQL cluster's meanwhile (every process of it,
autovacuum included; a server on this host only, else ``null``).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from redis import Redis
from rq import Queue

from bench.procfs import all_processes, process_times
from bench.workload import Workload
from sightline.embedded import EmbeddedRedis
from sightline.queue import Command, JobBuilder, make_queue
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.store.db import SQLITE_CACHE_KIB, make_engine
from sightline.store.migrate import upgrade
from sightline.store.products import create_product
from sightline.store.schema import events
from worker.main import run_worker


def write_sync(redis: Redis, commands: list[Command]) -> None:
    """The collector's write (``collector.groupcommit.write_async``), from synchronous code."""
    with redis.pipeline(transaction=True) as pipe:
        for args, options in commands:
            pipe.execute_command(*args, **options)  # type: ignore[no-untyped-call]
        pipe.execute()


class JobWriter:
    """Builds and sends one job as the collector does (the benchmark's own copy)."""

    def __init__(self, queue: Queue, *, max_retries: int, job_timeout: int) -> None:
        self._builder = JobBuilder(queue, max_retries=max_retries, job_timeout=job_timeout)
        self._redis = queue.connection

    def write(self, envelopes: Sequence[Any]) -> None:
        write_sync(self._redis, self._builder.commands(envelopes))


def enqueue(settings: Settings, workload: Workload, batch_size: int) -> int:
    redis = connect(settings, timeout=30)
    writer = JobWriter(make_queue(redis, settings.queue_name), max_retries=3, job_timeout=600)
    batch: list[Any] = []
    jobs = 0
    for envelope in workload.envelopes():
        batch.append(envelope)
        if len(batch) == batch_size:
            writer.write(batch)
            jobs += 1
            batch = []
    if batch:
        writer.write(batch)
        jobs += 1
    redis.close()
    return jobs


def storage_limit_sqlite(source: Path, target: Path, batch_size: int) -> tuple[float, int]:
    """Plain sqlite3 executemany of the stored rows into a fresh copy of the schema."""
    engine = make_engine(f"sqlite:///{target}")
    upgrade(engine)
    engine.dispose()
    rows = sqlite3.connect(source).execute("SELECT * FROM events").fetchall()
    columns = ", ".join(c.name for c in events.columns)
    marks = ", ".join("?" for _ in events.columns)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # the worker's own
    started = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO events ({columns}) VALUES ({marks})", rows[start : start + batch_size]
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed, len(rows)


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def server_cpu_seconds(engine: sa.Engine) -> float | None:
    """CPU time the whole PostgreSQL cluster has used so far (the postmaster's, its live
    children's, and its ended children's), if it runs on this host; else ``None``.
    Moves less than the worker's rate on a shared machine: the server's own work."""
    if engine.dialect.name != "postgresql" or not Path("/proc").is_dir():
        return None
    with engine.connect() as conn:
        child = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
        ).scalar()
    # (a server in another PID namespace or on another host has other pids)
    if child is None or b"checkpointer" not in _command(int(child)):
        return None
    found = process_times(int(child))
    postmaster = process_times(found.parent) if found is not None else None
    if found is None or postmaster is None:
        return None
    seconds = postmaster.own + postmaster.children_user + postmaster.children_system
    for times in all_processes().values():
        if times.parent == found.parent:
            seconds += times.own
    return seconds


def storage_limit_postgres(url: str, batch_size: int) -> tuple[float, int]:
    """PostgreSQL's fastest bulk load of the stored rows: ``COPY``, committed per batch."""
    import psycopg

    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain) as conn:
        rows = conn.execute(sa.text("SELECT * FROM events").text).fetchall()
        conn.execute("CREATE TEMP TABLE events_copy (LIKE events INCLUDING ALL)")
        columns = ", ".join(c.name for c in events.columns)
        adapted = [tuple(json.dumps(v) if isinstance(v, dict) else v for v in row) for row in rows]
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(adapted), batch_size):
                with cur.copy(f"COPY events_copy ({columns}) FROM STDIN") as copy:
                    for row in adapted[start : start + batch_size]:
                        copy.write_row(row)
                conn.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="envelopes per RQ job (the collector's flush size)",
    )
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    parser.add_argument(
        "--worker-max-events",
        type=int,
        default=Settings.worker_max_events,
        help="SIGHTLINE_WORKER_MAX_EVENTS: envelopes per transaction from a backlog of jobs"
        " (1: one job per transaction)",
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp,
        EmbeddedRedis(Path(tmp)) as redis,
    ):
        db_path = Path(tmp) / "bench.db"
        settings = Settings(
            data_dir=Path(tmp),
            redis_url=redis.url,
            database_url=args.database_url or f"sqlite:///{db_path}",
            worker_max_events=args.worker_max_events,
        )
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.delete(events))
            product = create_product(conn, "bench")
        workload = Workload(count=args.events, product_id=product.id)
        jobs = enqueue(settings, workload, args.batch_size)

        server_started = server_cpu_seconds(engine)
        started, cpu_started = time.perf_counter(), time.process_time()
        run_worker(settings, burst=True)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        server_ended = server_cpu_seconds(engine)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        server_cpu = (
            None
            if server_started is None or server_ended is None
            else round((server_ended - server_started) / max(stored, 1) * 1e6, 1)
        )
        engine.dispose()

        # The worker's transactions: whole jobs, up to the first reaching the bound.
        per_commit = args.batch_size * max(1, -(-args.worker_max_events // args.batch_size))
        if args.database_url and args.database_url.startswith("postgresql"):
            limit, _ = storage_limit_postgres(args.database_url, per_commit)
            database = "postgresql"
        else:
            limit, _ = storage_limit_sqlite(db_path, Path(tmp) / "limit.db", per_commit)
            database = "sqlite"
        worker_rate = stored / elapsed
        print(
            json.dumps(
                {
                    "bench": "worker",
                    "database": database,
                    "events": args.events,
                    "stored": stored,
                    "batch_size": args.batch_size,
                    "worker_max_events": args.worker_max_events,
                    "rows_per_commit": per_commit,
                    "jobs": jobs,
                    "seconds": round(elapsed, 2),
                    "worker_events_per_s": round(worker_rate),
                    "worker_cpu_us_per_event": round(cpu / max(stored, 1) * 1e6, 1),
                    # the PostgreSQL cluster's CPU meanwhile (a server on this host only)
                    "server_cpu_us_per_event": server_cpu,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "storage_limit_events_per_s": round(limit),
                    "ratio_to_storage_limit": round(worker_rate / limit, 3),
                    "goal": {"events_per_s": 15000, "ratio": 0.4},
                }
            )
        )


if __name__ == "__main__":
    main()
