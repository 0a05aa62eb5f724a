"""Events by month on PostgreSQL (migration 0009, ``sightline.store.partitions``) and
retention on both databases: the migration converts a populated table, dedup holds
across partitions, months are created ahead, events land in their month (or the
default partition), retention drops old months and keeps new ones."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
import sqlalchemy as sa

from sightline.model import Event, EventType, Normalised
from sightline.settings import Settings, SettingsError
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from sightline.store.partitions import (
    DEFAULT_PARTITION,
    add_months,
    apply_retention,
    create_month,
    ensure_partitions,
    is_partitioned,
    month_of,
    monthly_partitions,
    partition_name,
)
from sightline.store.rollups import utc_day
from sightline.store.schema import event_keys, events, products, sessions, visitor_days
from sightline.store.writer import write_batch
from tests.cli.test_cli import invoke, run
from tests.harness import System
from tests.servers import PostgresServer
from worker.maintenance import Maintenance

NOW = datetime.now(UTC)
THIS_MONTH = month_of(NOW)


def _event(message_id: str, when: datetime, *, user: str = "u1") -> Event:
    return Event(
        id=str(uuid.uuid4()),
        message_id=message_id,
        product_id="p",
        name="Viewed",
        type=EventType.PAGE,
        timestamp=when,
        received_at=when,
        user_id=user,
        anonymous_id=f"anon-{user}",
    )


def _write(engine: sa.Engine, *items: Event) -> tuple[int, int]:
    with engine.begin() as conn:
        if conn.execute(sa.select(products.c.id).where(products.c.id == "p")).first() is None:
            conn.execute(
                sa.insert(products).values(
                    id="p",
                    name="P",
                    allowed_origins=[],
                    settings={},
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        result = write_batch(conn, [Normalised(events=(e,)) for e in items])
    return result.stored, result.duplicates


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _where(engine: sa.Engine) -> dict[str, str]:
    """Each stored event's partition, by message id."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT message_id, tableoid::regclass::text FROM events")
        return {message_id: table for message_id, table in rows}


@pytest.fixture
def empty_pg(postgres_server: PostgresServer | None) -> Iterator[sa.Engine]:
    """A PostgreSQL database never migrated."""
    if postgres_server is None:
        pytest.skip("initdb / pg_ctl not installed")
    name = f"p_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    engine = make_engine(postgres_server.url(name))
    yield engine
    engine.dispose()


BOUNDARY = datetime(2025, 2, 1, tzinfo=UTC)
OLD_EVENTS = {
    "jan-first": datetime(2025, 1, 1, tzinfo=UTC),
    "jan-last": BOUNDARY - timedelta(microseconds=1),
    "feb-first": BOUNDARY,
    "ancient": datetime(2019, 6, 15, 12, tzinfo=UTC),
    "now": NOW,
}


@pytest.mark.postgres
def test_the_migration_converts_a_populated_table(empty_pg: sa.Engine) -> None:
    upgrade(empty_pg, "0006")
    # as the writer of revision 0006 stored them (its unique index was the dedup)
    rows = []
    for message_id, when in OLD_EVENTS.items():
        row = msgspec.structs.asdict(_event(message_id, when))
        rows.append({**row, "type": row["type"].value})
    with empty_pg.begin() as conn:
        assert not is_partitioned(conn)
        conn.execute(sa.insert(events), rows)

    upgrade(empty_pg)

    with empty_pg.connect() as conn:
        assert is_partitioned(conn)
        months = monthly_partitions(conn)
    assert _count(empty_pg, events) == len(OLD_EVENTS)
    assert _count(empty_pg, event_keys) == len(OLD_EVENTS)
    # every month with events, and the current one and two ahead
    expected = {month_of(w) for w in OLD_EVENTS.values()} | {
        add_months(THIS_MONTH, n) for n in range(3)
    }
    assert set(months) == expected
    assert _where(empty_pg) == {
        "jan-first": "events_p2025_01",
        "jan-last": "events_p2025_01",
        "feb-first": "events_p2025_02",
        "ancient": "events_p2019_06",
        "now": partition_name(THIS_MONTH),
    }
    # Dedup still holds for the converted rows: the same messages again store nothing,
    # even at another time (a retry's clock-skew correction), across a month boundary.
    assert _write(empty_pg, _event("jan-last", BOUNDARY + timedelta(seconds=1))) == (0, 1)
    assert _write(empty_pg, _event("feb-first", BOUNDARY - timedelta(seconds=1))) == (0, 1)
    assert _write(empty_pg, *(_event(m, w) for m, w in OLD_EVENTS.items())) == (0, 5)
    assert _count(empty_pg, events) == len(OLD_EVENTS)
    # and the indexes serve the read paths
    with empty_pg.connect() as conn:
        names = set(
            conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'events'"
            ).scalars()
        )
    assert {"pk_events", "ix_events_product_time", "ix_events_product_user"} <= names


@pytest.mark.postgres
def test_an_empty_database_migrates_and_downgrades(empty_pg: sa.Engine) -> None:
    upgrade(empty_pg)
    assert _write(empty_pg, _event("m1", NOW)) == (1, 0)
    from sightline.store.migrate import alembic_config

    config = alembic_config(empty_pg.url.render_as_string(hide_password=False))
    from alembic import command

    with empty_pg.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with empty_pg.connect() as conn:
        assert not is_partitioned(conn)
        assert (
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_constraint WHERE conname = 'uq_events_product_message'"
            ).scalar()
            == 1
        )
    assert _count(empty_pg, events) == 1
    upgrade(empty_pg)  # and up again: the event and its key are back
    assert _write(empty_pg, _event("m1", NOW)) == (0, 1)


def test_dedup_across_a_month_boundary_and_within_one(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        late = add_months(THIS_MONTH, 1) - timedelta(microseconds=1)
        assert _write(engine, _event("a", late), _event("b", late)) == (2, 0)
        # the retry dated a moment later: next month's partition on PostgreSQL
        assert _write(engine, _event("a", add_months(THIS_MONTH, 1))) == (0, 1)
        assert _write(engine, _event("b", late), _event("c", late)) == (1, 1)
        assert _count(engine, events) == 3
    finally:
        engine.dispose()


def test_months_ahead_and_the_default_partition(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            if not is_partitioned(conn):
                pytest.skip("SQLite: one table")
            assert monthly_partitions(conn) == [add_months(THIS_MONTH, n) for n in range(3)]
        far = add_months(THIS_MONTH, 5) + timedelta(days=3)
        older = add_months(THIS_MONTH, -4) + timedelta(hours=1)
        assert _write(engine, _event("far", far), _event("older", older)) == (2, 0)
        assert _where(engine) == {"far": DEFAULT_PARTITION, "older": DEFAULT_PARTITION}
        # a worker five months on: its months are made, and the months of what is in
        # the default partition; the rows move in
        with engine.begin() as conn:
            created = ensure_partitions(conn, now=far)
            assert create_month(conn, older) is False
        assert created == [
            *(partition_name(add_months(THIS_MONTH, n)) for n in (5, 6, 7)),
            partition_name(add_months(THIS_MONTH, -4)),
        ]
        assert _where(engine) == {
            "far": partition_name(add_months(THIS_MONTH, 5)),
            "older": partition_name(add_months(THIS_MONTH, -4)),
        }
        assert _write(engine, _event("far", far)) == (0, 1)
        # running it again creates nothing
        with engine.begin() as conn:
            assert ensure_partitions(conn, now=far) == []
    finally:
        engine.dispose()


def test_writes_during_a_split_of_the_default(database_url: str) -> None:
    """A write of an event of a month being created waits for the month, then lands in
    it: it neither fails the new partition's constraint (its row routed to the default
    partition before the month was attached) nor stays in the default."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            if not is_partitioned(conn):
                pytest.skip("SQLite: one table")
        month = add_months(THIS_MONTH, -7)
        assert _write(engine, _event("first", month + timedelta(days=1))) == (1, 0)
        results: list[object] = []

        def write_late() -> None:
            try:
                results.append(_write(engine, _event("late", month + timedelta(days=2))))
            except Exception as exc:  # the failure this test is about
                results.append(exc)

        writer = threading.Thread(target=write_late)
        with engine.begin() as conn:
            assert create_month(conn, month) is True
            writer.start()
            deadline = time.monotonic() + 30
            with engine.connect() as probe:  # the writer waits for a lock of ours
                while (
                    time.monotonic() < deadline
                    and not probe.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    ).scalar()
                ):
                    probe.rollback()
                    time.sleep(0.05)
        writer.join(30)
        assert results == [(1, 0)]
        assert _where(engine) == {"first": partition_name(month), "late": partition_name(month)}
    finally:
        engine.dispose()


def test_retention_drops_old_months_and_keeps_new_ones(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        days = 40
        now = NOW
        cutoff = now - timedelta(days=days)
        with engine.begin() as conn:
            partitioned = is_partitioned(conn)
            for back in (1, 2, 3, 4):
                if partitioned:
                    create_month(conn, add_months(month_of(now), -back))
        all_events = {
            "very-old": cutoff - timedelta(days=70),
            "old": month_of(cutoff) - timedelta(days=2),
            "ancient": datetime(2015, 3, 1, tzinfo=UTC),  # the default partition
            "edge": cutoff - timedelta(hours=1),  # before the cutoff, maybe in its month
            "recent": now - timedelta(days=1),
            "now": now,
        }
        stored = _write(engine, *(_event(m, w, user=m) for m, w in all_events.items()))
        assert stored == (len(all_events), 0)
        assert _count(engine, sessions) == len(all_events)
        done = apply_retention(engine, days, now=now, chunk=2)

        # PostgreSQL: whole months (the cutoff's own month stays); SQLite: to the moment
        assert done.horizon == (month_of(cutoff) if partitioned else cutoff)
        expected = {m for m, w in all_events.items() if w >= done.horizon}
        assert {"recent", "now"} <= expected and "old" not in expected
        with engine.connect() as conn:
            assert set(conn.execute(sa.select(events.c.message_id)).scalars()) == expected
            rolled_up = {m for m, w in all_events.items() if utc_day(w) >= utc_day(done.horizon)}
            assert set(conn.execute(sa.select(visitor_days.c.visitor)).scalars()) == rolled_up
            assert set(conn.execute(sa.select(sessions.c.visitor)).scalars()) == expected
            if partitioned:
                keys = set(conn.execute(sa.select(event_keys.c.message_id)).scalars())
                assert keys == expected
                assert min(monthly_partitions(conn)) == month_of(cutoff)
        if partitioned:
            assert partition_name(add_months(month_of(cutoff), -1)) in done.dropped
            assert partition_name(month_of(cutoff)) not in done.dropped
            assert done.deleted["events"] == 1  # "ancient", from the default partition
        else:
            assert done.dropped == []
            assert done.deleted["events"] == len(all_events) - len(expected)
        # and nothing more the second time
        again = apply_retention(engine, days, now=now)
        assert again.dropped == [] and again.deleted == {}
    finally:
        engine.dispose()


def test_retention_refuses_zero_days(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(ValueError, match="at least one day"):
            apply_retention(engine, 0)
    finally:
        engine.dispose()


def test_a_range_reads_only_its_months(database_url: str) -> None:
    """The read paths' ``timestamp`` ranges prune partitions (PostgreSQL)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            if not is_partitioned(conn):
                pytest.skip("SQLite: one table")
            start = THIS_MONTH + timedelta(days=1)
            query = (
                sa.select(sa.func.count())
                .select_from(events)
                .where(
                    events.c.product_id == "p",
                    events.c.timestamp >= start,
                    events.c.timestamp < start + timedelta(days=7),
                )
            )
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {compiled}").scalars())
        assert partition_name(THIS_MONTH) in plan
        assert partition_name(add_months(THIS_MONTH, 1)) not in plan
        assert DEFAULT_PARTITION not in plan
    finally:
        engine.dispose()


def test_the_worker_keeps_months_ahead_and_applies_retention(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            partitioned = is_partitioned(conn)
            if partitioned:
                conn.exec_driver_sql(f"DROP TABLE {partition_name(add_months(THIS_MONTH, 2))}")
        _write(engine, _event("old", NOW - timedelta(days=400)), _event("new", NOW))
        Maintenance(engine, retention_days=200).run_once()
        with engine.connect() as conn:
            if partitioned:
                assert monthly_partitions(conn) == [add_months(THIS_MONTH, n) for n in range(3)]
            assert set(conn.execute(sa.select(events.c.message_id)).scalars()) == {"new"}
    finally:
        engine.dispose()


def test_retention_from_the_command_line(system: System) -> None:
    refused = invoke(system, "retention", "run")
    assert refused.exit_code == 2
    assert "retention is off: set SIGHTLINE_RETENTION_DAYS or pass --days" in refused.output
    out = run(system, "retention", "run", "--days", "30")
    assert "kept 30 days: removed everything before" in out
    assert "partitions dropped: none" in out


def test_retention_days_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="SIGHTLINE_RETENTION_DAYS: must be greater than 0"):
        Settings.from_env({"SIGHTLINE_RETENTION_DAYS": "0"})
    assert Settings.from_env({"SIGHTLINE_RETENTION_DAYS": "90"}).retention_days == 90
    assert Settings.from_env({}).retention_days is None
