"""Read latency on a million stored events: the stats endpoint and the events list.

    python bench/query.py [--events 1000000] [--repeat 30] [--database-url URL | --postgres]
                          [--explain]

Set-up (not timed): a fresh database (a SQLite file in a temp dir; a throwaway
PostgreSQL cluster with ``--postgres``, like the suite's; or ``--database-url``),
migrated; a pool of realistic native events (bench/workload.py: real user agents,
public addresses, pages, referrers, UTM tags, mixed types) normalised and enriched by
the real dialect and worker enrichment; from it, ``--events`` rows as the writer stores
them, as visits (a visitor, a start in the last 30 days, a few events minutes apart,
one Sightline session each), bulk-inserted with the writer's own row encoding (SQLite
``executemany``, PostgreSQL ``COPY``) and the sessions table filled by the writer's
function. Secondary indexes are built after the load, then ``ANALYZE`` (PostgreSQL:
``VACUUM ANALYZE``, as autovacuum would; the events of each month in their own
partition, as the workers' maintenance leaves them).

Timed: the stats of the last 30 whole UTC days per day with a breakdown by page (the
store function ``GET /api/v1/stats`` calls, and the endpoint itself through the real
collector app: HTTP via Starlette's TestClient, a read key), after also the dashboard's
"last 24 hours" (per hour, every breakdown: read from the events), and
``GET /api/v1/events?user=...`` (newest 50 of a user, heavy and light users in turn).
First **before**: without the stats indexes (``ix_events_product_time`` as
``(product_id, timestamp)``, ``ix_sessions_product_started``), with
``ix_events_product_anonymous`` and ``ix_events_product_user`` as they were (without
``user_id`` and the time; without the time) and without the rollups (``visitor_days``,
``value_days``, ``value_visitors``, still filled);
then **after**, with all of them as migrated. Prints one JSON line: p50 / p95 / max in
milliseconds. Goal: p95 < 500 ms each. ``--explain``: then, on stderr, the plan of each
user's events query as the endpoint runs it (``EXPLAIN ANALYZE`` on PostgreSQL,
``EXPLAIN QUERY PLAN`` on SQLite) with its time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import sqlalchemy as sa
from starlette.testclient import TestClient

from bench.workload import Workload
from collector.app import create_app
from sightline.dialects import resolve
from sightline.embedded import EmbeddedRedis
from sightline.envelope import envelope_from_job
from sightline.ids import uuid7
from sightline.model import Event
from sightline.settings import Settings
from sightline.store.columns import EVENT_COLUMNS, EventColumns
from sightline.store.db import make_engine, read_connection
from sightline.store.migrate import upgrade
from sightline.store.partitions import split_default
from sightline.store.products import Product, create_product
from sightline.store.rollups import record_visitor_days, utc_day
from sightline.store.schema import (
    events,
    exists_on,
    sessions,
    value_days,
    value_visitors,
    visitor_days,
)
from sightline.store.sessions import record_sessions
from sightline.store.stats import BREAKDOWNS, StatsQuery, traffic_stats
from sightline.store.tokens import TokenKind, create_token
from sightline.store.writer import insert_sqlite_events
from worker.enricher import Enricher

STATS_INDEXES = (
    "ix_events_product_time",
    "ix_events_stats",
    "ix_sessions_product_started",
    "ix_events_product_anonymous",
    "ix_events_product_user",
)
"""The indexes this benchmark measures without (their earlier form), then with."""
EARLIER_FORMS = {
    "ix_events_product_time": ("product_id", "timestamp"),
    "ix_events_product_anonymous": ("product_id", "anonymous_id"),
    "ix_events_product_user": ("product_id", "user_id"),
}
"""Indexes that had another form before: measured in it first (migrations 0001 -> 0008;
``ix_events_product_time`` is ``ix_events_product_timestamp`` with the stats' columns,
migration 0010)."""
DAYS = 30
USERS = ["user-0", "user-3", "user-30", "user-300", "user-3000"]
"""Heavy to light: the events-by-user requests go through these in turn."""
CHUNK = 50_000
_EVENT_JSON = frozenset(("properties", "context"))
"""The JSON columns of ``events`` (sent to ``COPY`` as JSON text)."""
_json = msgspec.json.Encoder()


def enriched_pool(settings: Settings, product: Product, size: int) -> list[dict[str, Any]]:
    """``size`` workload messages as the worker makes them: normalised, enriched, rows."""
    enrich = Enricher.from_settings(settings)
    normalise = resolve("native").normalise
    made: list[Event] = []
    for sent in Workload(count=size, product_id=product.id).envelopes():
        envelope = envelope_from_job(msgspec.json.decode(_json.encode(sent)))  # as a job
        made.extend(enrich(normalise(envelope), product, envelope).events)
    enrich.close()
    return EventColumns.of(made).rows()


_VISIT_FIELDS = ("is_bot", "browser", "os", "device_type", "country")
"""What stays the same through a visit (one browser, one place)."""


def visits(
    pool: list[dict[str, Any]], count: int, visitors: int, now: datetime, seed: int = 11
) -> Iterator[list[dict[str, Any]]]:
    """Chunks of about ``CHUNK`` rows, whole visits each, ``count`` rows in all."""
    rng = random.Random(seed)
    # Zipf-like: visitor i comes back in proportion to 1 / (i + 10); the busiest visitor
    # has about 1% of the visits, most come once or twice.
    weights = list(itertools.accumulate(1 / (i + 10) for i in range(visitors)))
    made = 0
    chunk: list[dict[str, Any]] = []
    span = DAYS * 86_400
    while made < count:
        visitor = rng.choices(range(visitors), cum_weights=weights)[0]
        moment = now - timedelta(seconds=rng.uniform(60, span))
        session_id = uuid7(int(moment.timestamp() * 1000))
        length = min(1 + int(rng.expovariate(1 / 4)), count - made)
        first = pool[rng.randrange(len(pool))]
        for _ in range(length):
            row = dict(pool[rng.randrange(len(pool))])
            row.update({f: first[f] for f in _VISIT_FIELDS})
            row["id"] = uuid7(int(moment.timestamp() * 1000))
            row["message_id"] = f"q-{made}"
            row["timestamp"] = row["received_at"] = moment
            row["sent_at"] = row["original_timestamp"] = None
            row["anonymous_id"] = f"anon-{visitor}"
            row["user_id"] = f"user-{visitor}" if visitor % 3 == 0 else None
            row["session_id"] = session_id
            chunk.append(row)
            made += 1
            moment += timedelta(seconds=rng.uniform(5, 300))
        if len(chunk) >= CHUNK or made >= count:
            yield chunk
            chunk = []


def _indexes(conn: sa.Connection) -> list[sa.Index]:
    """The indexes of ``events`` and ``sessions`` on this database (some exist on one
    only, in another form on the other: ``schema.exists_on``)."""
    found = [*events.indexes, *sessions.indexes]
    return [index for index in found if exists_on(conn.dialect.name, index)]


def _drop_indexes(conn: sa.Connection) -> list[sa.Index]:
    dropped = _indexes(conn)
    for index in dropped:
        index.drop(conn)
    return dropped


def load(engine: sa.Engine, chunks: Iterator[list[dict[str, Any]]]) -> int:
    """Bulk-insert the rows (and their sessions); returns how many rows."""
    stored = 0
    with engine.begin() as conn:
        dropped = _drop_indexes(conn)
    for rows in chunks:
        with engine.begin() as conn:
            batch = EventColumns.from_rows(rows)
            if conn.dialect.name == "sqlite":
                insert_sqlite_events(conn, batch)
            else:
                _copy(conn, rows)
            record_sessions(conn, batch, set(batch["id"]))
            record_visitor_days(conn, batch)
        stored += len(rows)
    with engine.begin() as conn:
        # PostgreSQL: the past month's events went to the default partition; the
        # workers' hourly maintenance gives them their month (sightline.store.partitions)
        split_default(conn)
    with engine.begin() as conn:
        for index in dropped:
            if index.name not in STATS_INDEXES:
                index.create(conn)
        for name, columns in _earlier_forms().items():
            conn.exec_driver_sql(f"CREATE INDEX {name} ON events ({', '.join(columns)})")
    analyze(engine)
    return stored


def _earlier_forms() -> dict[str, tuple[str, ...]]:
    """``EARLIER_FORMS`` of the indexes this schema has."""
    names = {index.name for index in events.indexes}
    return {name: columns for name, columns in EARLIER_FORMS.items() if name in names}


def _copy(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    encode = _json.encode
    with cursor.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(
                tuple(encode(r[c]).decode() if c in _EVENT_JSON else r[c] for c in EVENT_COLUMNS)
            )
    cursor.close()


def analyze(engine: sa.Engine) -> None:
    """Statistics for the planner; on PostgreSQL also ``VACUUM`` (what autovacuum does
    after a bulk load): index-only scans need the visibility map it sets."""
    postgres = engine.dialect.name == "postgresql"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if postgres else "ANALYZE")


def add_stats_indexes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for name in _earlier_forms():
            conn.exec_driver_sql(f"DROP INDEX {name}")
        for index in _indexes(conn):
            if index.name in STATS_INDEXES:
                index.create(conn)
    analyze(engine)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def timed(request: Callable[[int], object], repeat: int) -> dict[str, float]:
    """``request(i)`` ``repeat`` times after two warm-ups: p50 / p95 / max."""
    samples: list[float] = []
    for i in range(repeat + 2):
        started = time.perf_counter()
        request(i)
        if i >= 2:
            samples.append(time.perf_counter() - started)
    return percentiles(samples)


def _ok(response: Any) -> None:
    assert response.status_code == 200, response.text


def measure(
    client: TestClient,
    engine: sa.Engine,
    product: Product,
    repeat: int,
    now: datetime,
    *,
    after: bool,
) -> dict[str, Any]:
    """The stats of the last 30 whole days per day by page (through the store function
    the endpoint calls, and, after, through the endpoint); a user's newest 50 events."""
    end = utc_day(now) + timedelta(days=1)
    start = end - timedelta(days=DAYS)
    params = {"from": start.isoformat(), "to": end.isoformat(), "breakdown": "page"}
    query = StatsQuery(
        product_id=product.id, start=start, end=end, breakdowns=("page",), rollups=after
    )
    users = USERS

    def store(_: int) -> None:
        with read_connection(engine) as conn:
            traffic_stats(conn, query)

    results: dict[str, Any] = {"stats_store": timed(store, repeat)}
    if after:
        results["stats_http"] = timed(
            lambda i: _ok(client.get("/api/v1/stats", params=params)), repeat
        )
        # The dashboard's "last 24 hours": per hour, every breakdown, up to the minute
        # (not whole days: read from the events, not the rollups).
        day = StatsQuery(
            product_id=product.id,
            start=now - timedelta(days=1),
            end=now,
            interval="hour",
            breakdowns=tuple(BREAKDOWNS),
        )

        def last_day(_: int) -> None:
            with read_connection(engine) as conn:
                traffic_stats(conn, day)

        results["stats_24h_store"] = timed(last_day, repeat)
    results["events_by_user_http"] = timed(
        lambda i: _ok(
            client.get("/api/v1/events", params={"user": users[i % len(users)], "limit": "50"})
        ),
        repeat,
    )
    return results


def explain_user_reads(client: TestClient, engine: sa.Engine) -> None:
    """Each user's events query as the endpoint runs it, and its plan, on stderr."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM events" in statement and "ORDER BY" in statement:
            captured.append((statement, parameters))

    queries: list[tuple[str, str, Any]] = []
    sa.event.listen(sa.Engine, "before_cursor_execute", capture)
    try:
        for user in USERS:
            captured.clear()
            _ok(client.get("/api/v1/events", params={"user": user, "limit": "50"}))
            queries.extend((user, statement, parameters) for statement, parameters in captured)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", capture)
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    for user, statement, parameters in queries:
        started = time.perf_counter()
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(prefix + statement, parameters).all()
        took = (time.perf_counter() - started) * 1000
        print(f"-- {user} ({took:.0f} ms)\n{statement}\n{parameters}", file=sys.stderr)
        for row in plan:
            print("   " + " ".join(str(v) for v in row), file=sys.stderr)


@contextmanager
def database(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, str]]:
    if args.database_url:
        yield args.database_url, args.database_url.split(":", 1)[0].split("+", 1)[0]
        return
    if not args.postgres:
        yield f"sqlite:///{tmp / 'query.db'}", "sqlite"
        return
    from tests.servers import PostgresServer

    workdir = Path(tempfile.mkdtemp(prefix="sightline-bench-pg-"))
    workdir.chmod(0o755)
    server = PostgresServer(workdir)
    server.start()
    try:
        yield server.url(), "postgresql"
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=20_000, help="distinct enriched messages")
    parser.add_argument("--visitors", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed requests of each kind")
    parser.add_argument(
        "--repeat-before", type=int, default=10, help="the same without the indexes (slow)"
    )
    parser.add_argument("--database-url", default=None, help="an empty database to fill")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster")
    parser.add_argument(
        "--explain", action="store_true", help="the plans of the users' events queries (stderr)"
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="sightline-bench-") as tmp,
        EmbeddedRedis(Path(tmp)) as redis,
        database(args, Path(tmp)) as (url, kind),
    ):
        settings = Settings(data_dir=Path(tmp), redis_url=redis.url, database_url=url)
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        with engine.begin() as conn:
            product = create_product(conn, "bench")
            key = create_token(conn, TokenKind.READ, product_id=product.id)[1]
        now = datetime.now(UTC)
        started = time.perf_counter()
        pool = enriched_pool(settings, product, args.pool)
        stored = load(engine, visits(pool, args.events, args.visitors, now))
        setup = time.perf_counter() - started
        with engine.connect() as conn:
            session_count = conn.execute(
                sa.select(sa.func.count()).select_from(sessions)
            ).scalar_one()
            count = sa.select(sa.func.count())
            rollup_rows = {
                "visitor_days": conn.execute(count.select_from(visitor_days)).scalar_one(),
                "value_days": conn.execute(count.select_from(value_days)).scalar_one(),
                "value_visitors": conn.execute(count.select_from(value_visitors)).scalar_one(),
                "value_visitors_page": conn.execute(
                    count.where(value_visitors.c.dimension == "page")
                ).scalar_one(),
            }
        with TestClient(create_app(settings)) as client:
            client.headers.update({"Authorization": f"Bearer {key}"})
            before = measure(client, engine, product, args.repeat_before, now, after=False)
            add_stats_indexes(engine)
            after = measure(client, engine, product, args.repeat, now, after=True)
            if args.explain:
                explain_user_reads(client, engine)
        engine.dispose()
        print(
            json.dumps(
                {
                    "bench": "query",
                    "database": kind,
                    "events": stored,
                    "sessions": session_count,
                    "rollup_rows": rollup_rows,
                    "repeat": {"before": args.repeat_before, "after": args.repeat},
                    "setup_s": round(setup, 1),
                    "before": before,
                    "after": after,
                    "goal": {"p95_ms": 500},
                }
            )
        )


if __name__ == "__main__":
    main()
