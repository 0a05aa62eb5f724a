"""Scale-out, measured: more workers on one backlog, and several processes on one machine.

    python bench/scale.py --postgres-url postgresql+psycopg://user@host/postgres [--events 40000]

1. The same backlog (``--events`` realistic events, 64 per job, as bench/worker.py
   enqueues them) stored by 1 worker process, then (into a fresh database) by 2
   worker processes at once: events/s of each run, and the ratio (goal >= 1.6). The
   clock starts when the backlog is released to workers that are up, and stops when
   Sightline's ``stored`` counter reaches ``--events``; ``counting_process_start``
   also counts the processes' start (~0.9 s each, in parallel), as this benchmark
   did before 2026-12-01.
2. ``sightline up --collectors 2 --workers 2`` on one Redis and one PostgreSQL under
   wrk (64 connections, ``--seconds``), then drained: the events stored must be
   exactly the acknowledged ones (wrk's 2xx), plus at most the requests wrk abandoned
   in flight when it stopped (one per connection).

``--postgres-url`` names a server's maintenance database: each run creates a fresh
database beside it (``CREATE DATABASE``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg
import sqlalchemy as sa
from redis import Redis
from rq import Worker

from bench.collector import LUA, free_port, wrk
from bench.worker import enqueue
from bench.workload import Workload
from sightline.embedded import EmbeddedRedis
from sightline.queue import make_queue
from sightline.redis_keys import Counter, counter_key
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from sightline.store.products import create_product
from sightline.store.schema import events


def fresh_database(server_url: str) -> str:
    name = f"scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = sa.make_url(server_url).set(database=name)
    return url.render_as_string(hide_password=False)


def stored(database_url: str) -> int:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    engine.dispose()
    return int(count)


def cpu_ticks() -> tuple[int, int]:
    """(all, busy) ticks of the machine's cores so far, from /proc/stat (Linux)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks), sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait


class Backlog(NamedTuple):
    """What ``processes`` workers did with one backlog."""

    events_per_s: float
    """From the moment the backlog was released to ready workers."""
    events_per_s_counting_start: float
    """From the moment the processes were spawned."""
    cores_busy: float
    """The machine's cores busy (all processes: workers, PostgreSQL, Redis), on average
    while the backlog was stored."""


def workers_on_a_backlog(server_url: str, processes: int, count: int) -> Backlog:
    """Events/s of ``processes`` workers storing one backlog of ``count`` events.

    The first is the workers' rate. The backlog is enqueued, then held aside (its RQ
    list renamed) until every worker has registered with RQ, and released in one
    command; the clock stops when Sightline's ``stored`` counter reaches ``count``.
    The second also counts each process's start (interpreter, imports, GeoIP, pool:
    ~0.9 s, the same for 1 process or 2), which is not throughput."""
    database_url = fresh_database(server_url)
    with (
        tempfile.TemporaryDirectory(prefix="sightline-scale-") as tmp,
        EmbeddedRedis(Path(tmp)) as redis,
    ):
        settings = Settings(data_dir=Path(tmp), redis_url=redis.url, database_url=database_url)
        engine = make_engine(database_url)
        upgrade(engine)
        with engine.begin() as conn:
            product = create_product(conn, "bench")
        engine.dispose()
        enqueue(settings, Workload(count=count, product_id=product.id), 64)
        connection = connect(settings, timeout=30)
        queue = make_queue(connection, settings.queue_name)
        held = f"{queue.key}:held"
        connection.rename(queue.key, held)
        stored_key = counter_key(settings.queue_name, Counter.STORED)
        env = dict(os.environ) | {
            "REDIS_URL": redis.url,
            "DATABASE_URL": database_url,
            "SIGHTLINE_DATA_DIR": tmp,
        }
        spawned = time.perf_counter()
        running = [
            subprocess.Popen([sys.executable, "-m", "sightline", "worker"], env=env)
            for _ in range(processes)
        ]
        try:
            deadline = time.monotonic() + 120
            while Worker.count(connection=connection, queue=queue) < processes:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{processes} worker(s) did not register")
                time.sleep(0.01)
            released, ticks_released = time.perf_counter(), cpu_ticks()
            connection.rename(held, queue.key)  # wakes the workers blocked on the queue
            deadline = time.monotonic() + 1800
            while int(connection.get(stored_key) or 0) < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{processes} worker(s) did not store the backlog")
                time.sleep(0.005)
            done, ticks_done = time.perf_counter(), cpu_ticks()
        finally:
            for process in running:
                process.terminate()
            for process in running:
                process.wait(timeout=120)
            connection.close()
        total = stored(database_url)
    if total != count:
        raise SystemExit(f"{processes} worker(s) stored {total} of {count} events")
    return Backlog(
        total / (done - released),
        total / (done - spawned),
        (os.cpu_count() or 1)
        * (ticks_done[1] - ticks_released[1])
        / (ticks_done[0] - ticks_released[0]),
    )


def collectors_and_workers(server_url: str, seconds: int) -> dict[str, object]:
    """``up --collectors 2 --workers 2`` on PostgreSQL: stored == acknowledged."""
    database_url = fresh_database(server_url)
    with tempfile.TemporaryDirectory(prefix="sightline-scale-") as tmp:
        data_dir = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env |= {"DATABASE_URL": database_url, "SIGHTLINE_DATA_DIR": str(data_dir)}
        cli = [sys.executable, "-m", "sightline"]
        subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
        created = subprocess.run(
            [*cli, "products", "create", "bench", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        key = json.loads(created.stdout)["write_keys"][0]
        port = free_port()
        up = subprocess.Popen(
            [*cli, "up", "--port", str(port), "--collectors", "2", "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("sightline up did not start")
                time.sleep(0.2)
            script = Path(tmp) / "post.lua"
            script.write_text(LUA % base64.b64encode(f"{key}:".encode()).decode())
            load = wrk(port, script, seconds, 64)
            redis = Redis(unix_socket_path=str(data_dir / "redis.sock"))
            deadline = time.monotonic() + 600
            accepted = processed = 0
            while time.monotonic() < deadline:
                a, p = redis.mget(
                    [
                        counter_key("sightline", Counter.ACCEPTED),
                        counter_key("sightline", Counter.PROCESSED),
                    ]
                )
                accepted, processed = int(a or 0), int(p or 0)
                if processed >= accepted:
                    break
                time.sleep(0.5)
            redis.close()
        finally:
            up.terminate()
            up.wait(120)
        total = stored(database_url)
    acknowledged = int(load["ok"])
    return {
        "collector_rps": round(load["rps"]),
        "acknowledged": acknowledged,
        "accepted_in_redis": accepted,
        "stored": total,
        "stored_minus_acknowledged": total - acknowledged,
        "exactly_the_acknowledged": 0 <= total - acknowledged <= 64,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    one = workers_on_a_backlog(args.postgres_url, 1, args.events)
    two = workers_on_a_backlog(args.postgres_url, 2, args.events)
    print(
        json.dumps(
            {
                "bench": "scale",
                "database": "postgresql",
                "events": args.events,
                "one_worker_events_per_s": round(one.events_per_s),
                "two_workers_events_per_s": round(two.events_per_s),
                "ratio_two_to_one": round(two.events_per_s / one.events_per_s, 3),
                "cores": os.cpu_count(),
                "cores_busy": {
                    "one_worker": round(one.cores_busy, 2),
                    "two_workers": round(two.cores_busy, 2),
                },
                "counting_process_start": {
                    "one_worker_events_per_s": round(one.events_per_s_counting_start),
                    "two_workers_events_per_s": round(two.events_per_s_counting_start),
                    "ratio_two_to_one": round(
                        two.events_per_s_counting_start / one.events_per_s_counting_start, 3
                    ),
                },
                "two_collectors_two_workers": collectors_and_workers(
                    args.postgres_url, args.seconds
                ),
                "goal": {"ratio_two_to_one": 1.6},
            }
        )
    )


if __name__ == "__main__":
    main()
