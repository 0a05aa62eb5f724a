"""The reads of ``events`` are index ranges, not scans of the table or of a product.

Each read path runs as the store runs it; its statements are captured and explained
(SQLite: ``EXPLAIN QUERY PLAN``, without ``ANALYZE`` statistics, as a SQLite store
runs; PostgreSQL: ``EXPLAIN`` with sequential scans, bitmap scans and sorts priced
out, so the plan shows which index can serve the read, on every partition, and the
partitions' index names read as their parent's). Migration 0010 left one index in time
order (``ix_events_product_time``): the pages, the stats' event ranges and retention
read it; the person, type and name filters keep their own. The reads of every product
(an admin's) go product by product, and give the same order as one sort would.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from sightline.model import Event, EventType, Normalised
from sightline.store.db import make_engine
from sightline.store.erasure import forget_user
from sightline.store.partitions import apply_retention
from sightline.store.products import create_product
from sightline.store.queries import product_ids, recent_events
from sightline.store.reads import EventQuery, iter_events, list_events
from sightline.store.schema import events, exists_on
from sightline.store.stats import BREAKDOWNS, StatsQuery, traffic_stats
from sightline.store.writer import write_batch

NOW = datetime.now(UTC).replace(microsecond=0)
TIME = "ix_events_product_time"
USER, ANONYMOUS = "ix_events_product_user", "ix_events_product_anonymous"


def _event(product_id: str, n: int, when: datetime, *, user: str | None = None) -> Event:
    return Event(
        id=str(uuid.uuid4()),
        message_id=f"m-{product_id}-{n}",
        product_id=product_id,
        name="Viewed" if n % 2 else "Signed Up",
        type=EventType.PAGE if n % 2 else EventType.TRACK,
        timestamp=when,
        received_at=when,
        user_id=user,
        anonymous_id=f"anon-{n % 3}",
    )


@pytest.fixture
def store(database_url: str) -> Iterator[tuple[sa.Engine, list[str]]]:
    """Two products whose events interleave in time (some at the same moment)."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        made = [create_product(conn, name).id for name in ("one", "two")]
    batch = [
        _event(made[n % 2], n, NOW - timedelta(hours=n // 3), user="u1" if n % 4 == 0 else None)
        for n in range(40)
    ]
    with engine.begin() as conn:
        write_batch(conn, [Normalised(events=(e,)) for e in batch])
    yield engine, made
    engine.dispose()


def _plans(
    engine: sa.Engine,
    read: Callable[[sa.Connection], Any],
    *keep: str,
    primary_key: bool = True,
) -> list[str]:
    """The plan of each statement on ``events`` that ``read`` runs (one text each).

    PostgreSQL: planned with the indexes ``keep`` (and the primary key, unless not
    ``primary_key``) only, the others dropped in a transaction rolled back, sequential
    and bitmap scans priced out: the plan shows whether those indexes serve the read as
    a range (with a test's few rows and no statistics the planner's own choice says
    nothing)."""
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.match(r"\s*(SELECT|WITH|DELETE)\b", statement) and re.search(
            r"\b(FROM|JOIN) events\b", statement
        ):
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as conn:
            read(conn)
            conn.rollback()
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert captured, "the read ran no statement on events"
    plans = []
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            for statement, parameters in captured:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plans.append("\n".join(str(row[-1]) for row in rows))
            return plans
        for index in events.indexes:
            if exists_on("postgresql", index) and index.name not in keep:
                conn.exec_driver_sql(f"DROP INDEX {index.name}")
        if not primary_key:
            (name,) = conn.exec_driver_sql(
                "SELECT conname FROM pg_constraint "
                "WHERE conrelid = 'events'::regclass AND contype = 'p'"
            ).scalars()
            conn.exec_driver_sql(f"ALTER TABLE events DROP CONSTRAINT {name}")
        parents = dict(
            conn.exec_driver_sql(
                "SELECT c.relname, p.relname FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relkind = 'I'"
            ).all()
        )
        for setting in ("enable_seqscan", "enable_bitmapscan"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = off")
        for statement, parameters in captured:
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
            plans.append(re.sub(r"using (\w+)", lambda m: f"using {parents.get(m[1], m[1])}", plan))
        conn.rollback()
    return plans


def _scans(plan: str) -> list[str]:
    """What in ``plan`` reads every row of the table."""
    return [line for line in plan.splitlines() if re.search(r"Seq Scan on|\bSCAN events\b", line)]


def _uses(plan: str, index: str, columns: tuple[str, ...]) -> bool:
    """``plan`` reads ``index`` bounded by each of ``columns`` (a range of it)."""
    lines = plan.splitlines()
    for line, following in zip(lines, [*lines[1:], ""][: len(lines)], strict=True):
        sqlite = re.search(rf"INDEX {index} \((.*)\)", line)
        bounds = sqlite[1] if sqlite is not None else None
        if f"using {index} on" in line and "Index Cond" in following:
            bounds = following
        if bounds is not None and all(re.search(rf"\b{c}\b", bounds) for c in columns):
            return True
    return False


def _assert_ranges(plans: list[str], *expected: tuple[str, tuple[str, ...]]) -> None:
    text = "\n---\n".join(plans)
    assert not any(_scans(plan) for plan in plans), text
    for index, columns in expected:
        assert any(_uses(plan, index, columns) for plan in plans), (index, text)


def test_a_page_of_a_product_reads_the_time_index(store: tuple[sa.Engine, list[str]]) -> None:
    engine, (one, _) = store

    def pages(conn: sa.Connection) -> None:
        first = list_events(conn, EventQuery(product_id=one, include_bots=False), limit=5)
        list_events(conn, EventQuery(product_id=one), limit=5, cursor=first.next_cursor)
        list_events(conn, EventQuery(product_id=one, start=NOW - timedelta(hours=3)), limit=5)

    plans = _plans(engine, pages, TIME)
    _assert_ranges(plans, (TIME, ("product_id",)))
    for plan in plans:  # newest first from the index: at most the ties of a timestamp sorted
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


def _assert_person(engine: sa.Engine, read: Callable[[sa.Connection], Any]) -> None:
    """``read`` reads a person's events as two ranges: of their user ids, and of their
    anonymous ids without a user id (PostgreSQL: the two indexes alone; the user index
    holds the events with a user id only, migration 0011, the anonymous index those
    without, migration 0012: neither alone serves both)."""
    plans = _plans(engine, read, USER, ANONYMOUS)
    _assert_ranges(
        plans, (USER, ("product_id", "user_id")), (ANONYMOUS, ("product_id", "anonymous_id"))
    )
    # Not the product's events newest first, filtered (a scan of the product for a
    # light user): with the id in ix_events_product_time SQLite chose that.
    assert not any(TIME in plan for plan in plans), plans


def test_a_person_reads_the_user_and_anonymous_indexes(
    store: tuple[sa.Engine, list[str]],
) -> None:
    engine, (one, _) = store
    _assert_person(
        engine, lambda conn: list_events(conn, EventQuery(product_id=one, user="u1"), limit=5)
    )


def test_type_and_name_filters_read_their_indexes(store: tuple[sa.Engine, list[str]]) -> None:
    engine, (one, _) = store
    kind, name = "ix_events_product_type_timestamp", "ix_events_product_name_timestamp"
    _assert_ranges(
        _plans(
            engine, lambda c: list_events(c, EventQuery(product_id=one, types=("track",))), kind
        ),
        (kind, ("product_id", "type")),
    )
    _assert_ranges(
        _plans(
            engine, lambda c: list_events(c, EventQuery(product_id=one, names=("Viewed",))), name
        ),
        (name, ("product_id", "name")),
    )


def test_stats_of_a_range_the_rollups_do_not_answer_read_the_time_index_alone(
    store: tuple[sa.Engine, list[str]],
) -> None:
    """The dashboard's "last 24 hours": per hour, not whole days, every breakdown."""
    engine, (one, _) = store
    query = StatsQuery(
        product_id=one,
        start=NOW - timedelta(days=1),
        end=NOW + timedelta(minutes=1),
        interval="hour",
        breakdowns=tuple(BREAKDOWNS),
    )
    # Without the primary key (id, timestamp): with no statistics its scan bounded by the
    # time alone is priced as a range of the time index (one row either way), and won
    # the tie once the day's range spanned two partitions.
    plans = _plans(engine, lambda conn: traffic_stats(conn, query), TIME, primary_key=False)
    _assert_ranges(plans, (TIME, ("product_id", "timestamp")))
    for plan in plans:  # covering: no event row read (PostgreSQL: an index-only scan)
        assert re.search(r"COVERING INDEX|Index Only Scan", plan), plan


def test_retention_and_erasure_read_ranges(store: tuple[sa.Engine, list[str]]) -> None:
    engine, (one, _) = store
    _assert_ranges(
        _plans(engine, lambda _: apply_retention(engine, 1, now=NOW + timedelta(days=1)), TIME),
        (TIME, ("product_id", "timestamp")),
    )
    _assert_person(engine, lambda _: forget_user(engine, one, "u1", requested_by="test"))


def test_every_product_newest_first(store: tuple[sa.Engine, list[str]]) -> None:
    """An admin's reads without a product: each product's range, merged; the same order
    as sorting every event."""
    engine, made = store
    with engine.connect() as conn:
        assert product_ids(conn) == sorted(made)
        everything = sorted(
            conn.execute(sa.text("SELECT timestamp, id FROM events")).all(), reverse=True
        )
        expected = [event_id for _, event_id in everything]
        assert [e.id for e in recent_events(conn, limit=7)] == expected[:7]
        seen: list[str] = []
        cursor = None
        while True:
            page = list_events(conn, EventQuery(), limit=6, cursor=cursor)
            seen += [e.id for e in page.events]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == expected
    assert [e.id for e in iter_events(engine, EventQuery(), chunk=4)] == expected
    plans = _plans(engine, lambda conn: list_events(conn, EventQuery(), limit=5), TIME)
    _assert_ranges(plans, (TIME, ("product_id",)))


def test_every_product_of_an_empty_store(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert product_ids(conn) == []
            assert list_events(conn, EventQuery()).events == []
        assert list(iter_events(engine, EventQuery())) == []
    finally:
        engine.dispose()


def test_events_encode_as_before(store: tuple[sa.Engine, list[str]]) -> None:
    """The merge keeps whole events (not rows): what a page of one product gives."""
    engine, (one, _) = store
    with engine.connect() as conn:
        alone = list_events(conn, EventQuery(product_id=one), limit=100).events
        merged = [
            e for e in list_events(conn, EventQuery(), limit=100).events if e.product_id == one
        ]
    assert msgspec.json.encode(alone) == msgspec.json.encode(merged)
