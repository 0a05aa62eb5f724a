"""Events by month on PostgreSQL, and retention on both databases.

On PostgreSQL ``events`` is range-partitioned on ``timestamp`` (declarative
partitioning, migration 0009): one partition per UTC month, ``events_pYYYY_MM``, and
``events_default`` for any event outside them (old imports, a month nobody created
yet), so no time is ever refused. :func:`ensure_partitions` creates the current month
and the next :data:`MONTHS_AHEAD` (``sightline migrate`` and every worker, hourly), and
a month for the events that went to the default partition (:func:`split_default`):
a month created after events of it were stored takes them along.

Every unique index of a partitioned table must contain the partition key, and a
retried message is not guaranteed the same ``timestamp`` (the clock-skew correction
uses the retry's own send and receive times), so the dedup on (product, message id)
cannot be a unique index of ``events``. It is the table ``event_keys`` instead: the
writer inserts a batch's keys first (``ON CONFLICT DO NOTHING RETURNING``) and only
the events whose key was new (:func:`insert_new_events_sql`), one statement. A key
is kept as long as its event (retention removes both). SQLite keeps its unique
index on ``events`` (there is one writer at a time, nothing to partition).

Retention (``SIGHTLINE_RETENTION_DAYS``, off by default; :func:`apply_retention`):
PostgreSQL drops whole months whose last moment is older than the cutoff (so events
are kept between N days and N days plus a month), deletes older rows of the default
partition, and the keys, sessions and daily rollups older than the same horizon, in
transactions of at most :data:`RETENTION_CHUNK` rows. SQLite deletes everything older
than the cutoff itself, in the same bounded transactions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sightline.store.queries import product_ids
from sightline.store.rollups import utc_day
from sightline.store.schema import event_keys, events, sessions, visitor_days

MONTHS_AHEAD = 2
"""Months created beyond the current one: a worker that stops for two months still
finds its events' partitions (and the default partition catches the rest)."""
DEFAULT_PARTITION = "events_default"
RETENTION_CHUNK = 5000
"""Rows one retention transaction deletes at most (locks held briefly, WAL bounded)."""
LOCK_TIMEOUT = "10s"
"""How long partition maintenance waits for a table lock before it gives up (and the
next pass tries again): requests queued behind it wait no longer than that."""
MAINTENANCE_LOCK = 0x5167_4C70
"""The advisory lock that serialises partition maintenance between processes."""

_MONTHLY = re.compile(r"^events_p(\d{4})_(\d{2})$")


def is_partition_table(name: str | None) -> bool:
    """Whether ``name`` is one of the partitions of ``events`` (not a schema table)."""
    return name is not None and (name == DEFAULT_PARTITION or _MONTHLY.match(name) is not None)


def month_of(moment: datetime) -> datetime:
    """The first moment (UTC) of the month holding ``moment``."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def partition_name(start: datetime) -> str:
    return f"events_p{start.year:04d}_{start.month:02d}"


def is_partitioned(conn: sa.Connection) -> bool:
    """Whether ``events`` is a partitioned table here (PostgreSQL after migration 0009)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(
        conn.exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
            "WHERE partrelid = to_regclass('events'))"
        ).scalar()
    )


def monthly_partitions(conn: sa.Connection) -> list[datetime]:
    """The first moments of the months that have a partition, oldest first."""
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('events')"
    ).scalars()
    months = []
    for name in names:
        found = _MONTHLY.match(name)
        if found:
            months.append(datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC))
    return sorted(months)


def _literal(moment: datetime) -> str:
    return f"'{moment.astimezone(UTC).isoformat(' ')}'"


def create_month(conn: sa.Connection, start: datetime) -> bool:
    """The partition of the month starting at ``start``, unless it exists; events of
    that month in the default partition move into it. Whether it was created."""
    start = month_of(start)
    if start in monthly_partitions(conn):
        return False
    name, end = partition_name(start), add_months(start, 1)
    bounds = f"FROM ({_literal(start)}) TO ({_literal(end)})"
    # Created apart and attached, with the writers held at the parent meanwhile (SHARE
    # ROW EXCLUSIVE on events: readers go on). Holding only the default partition is not
    # enough: an INSERT routes its row when it opens events, then waits for the default
    # partition, and once this month is attached the row violates the default's new
    # constraint (a CheckViolation that fails the writer's batch: seen in the tests).
    conn.exec_driver_sql("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS)")
    conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE timestamp >= {_literal(start)} "
        f"AND timestamp < {_literal(end)} RETURNING *) INSERT INTO {name} SELECT * FROM moved"
    )
    conn.exec_driver_sql(f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES {bounds}")
    return True


def ensure_partitions(
    conn: sa.Connection,
    now: datetime | None = None,
    ahead: int = MONTHS_AHEAD,
    since: datetime | None = None,
) -> list[str]:
    """The partitions of the current month and the ``ahead`` next ones, and of the
    months of the default partition's events from ``since`` on (PostgreSQL with a
    partitioned ``events``; nothing elsewhere). The names of those created."""
    if not is_partitioned(conn):
        return []
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MAINTENANCE_LOCK})")
    # Never queue the workers' and readers' locks behind ours for long: fail, retry later.
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    first = month_of(now or datetime.now(UTC))
    created = []
    for n in range(ahead + 1):
        month = add_months(first, n)
        if create_month(conn, month):
            created.append(partition_name(month))
    return created + split_default(conn, since)


def split_default(conn: sa.Connection, since: datetime | None = None, limit: int = 12) -> list[str]:
    """Partitions for the months of events in the default partition (an import of old
    events, a worker stopped for months), oldest first, at most ``limit`` months: the
    default partition stays small, and what it holds is read by month like the rest.
    Events before ``since`` are left where they are (retention is about to remove them)."""
    if not is_partitioned(conn):
        return []
    created = []
    oldest_kept = _literal(since or datetime(1, 1, 1, tzinfo=UTC))
    for _ in range(limit):
        oldest = conn.exec_driver_sql(
            f"SELECT min(timestamp) FROM {DEFAULT_PARTITION} WHERE timestamp >= {oldest_kept}"
        ).scalar()
        if oldest is None or not create_month(conn, oldest):
            break
        created.append(partition_name(month_of(oldest)))
    return created


@dataclass
class Retention:
    """What one retention pass removed."""

    horizon: datetime
    """Everything older than this was removed."""
    dropped: list[str] = field(default_factory=list)
    """Partitions of ``events`` dropped whole (PostgreSQL)."""
    deleted: dict[str, int] = field(default_factory=dict)
    """Rows deleted per table."""


def retention_horizon(conn: sa.Connection, days: int, now: datetime | None = None) -> datetime:
    """The moment before which retention removes data: ``days`` before ``now``, down to
    the start of its month where whole months are dropped (partitioned PostgreSQL)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    return month_of(cutoff) if is_partitioned(conn) else cutoff


def apply_retention(
    engine: sa.Engine, days: int, now: datetime | None = None, chunk: int = RETENTION_CHUNK
) -> Retention:
    """Remove events (and their keys, sessions and daily rollups) older than ``days``."""
    if days < 1:
        raise ValueError("retention must keep at least one day")
    with engine.begin() as conn:
        horizon = retention_horizon(conn, days, now)
        partitioned = is_partitioned(conn)
        products = product_ids(conn)
    result = Retention(horizon)
    if partitioned:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MAINTENANCE_LOCK})")
            # DROP locks events exclusively: it waits this long for running queries at most
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            for start in monthly_partitions(conn):
                if add_months(start, 1) <= horizon:
                    conn.exec_driver_sql(f"DROP TABLE {partition_name(start)}")
                    result.dropped.append(partition_name(start))
    deletions: Sequence[tuple[str, sa.Table, sa.ColumnElement[bool]]] = (
        # product by product: each a range of ix_events_product_time (no index of events
        # has the time first)
        *(
            ("events", events, sa.and_(events.c.product_id == p, events.c.timestamp < horizon))
            for p in products
        ),
        ("event_keys", event_keys, event_keys.c.timestamp < horizon),
        ("sessions", sessions, sessions.c.ended_at < horizon),
        # a day's rollup goes with the day's last event (the cutoff's own day stays)
        ("visitor_days", visitor_days, visitor_days.c.day < utc_day(horizon)),
    )
    for name, table, older in deletions:
        if table is event_keys and not partitioned:
            continue  # SQLite: no keys table in use
        gone = _delete_in_chunks(engine, table, older, chunk)
        if gone:
            result.deleted[name] = result.deleted.get(name, 0) + gone
    return result


def _delete_in_chunks(
    engine: sa.Engine, table: sa.Table, where: sa.ColumnElement[bool], chunk: int
) -> int:
    """Delete the rows ``where`` in transactions of at most ``chunk`` rows each."""
    keys: list[sa.Column[Any]] = list(table.primary_key.columns)
    chosen = sa.select(*keys).where(where).limit(chunk)
    condition = keys[0].in_(chosen) if len(keys) == 1 else sa.tuple_(*keys).in_(chosen)
    statement = sa.delete(table).where(condition)
    total = 0
    while True:
        with engine.begin() as conn:
            n = conn.execute(statement).rowcount
        total += n
        if n < chunk:
            return total


def insert_new_events_sql(stage: str, columns: Sequence[str], *, unstage: bool = False) -> str:
    """PostgreSQL: one statement that stores the events of ``stage`` whose (product,
    message id) was never seen, and returns their keys: the keys go into ``event_keys``
    first (``ON CONFLICT DO NOTHING RETURNING``: a concurrent writer of the same key waits
    for the other's commit), then the events that own a new key. ``unstage``: the same
    statement deletes the other events from ``stage``, which then holds the new ones
    only (statements sent behind it read them without waiting for its result)."""
    names = ", ".join(columns)
    staged = ", ".join(f"s.{c}" for c in columns)
    old = (
        f", old AS (DELETE FROM {stage} s WHERE NOT EXISTS (SELECT FROM new "
        "WHERE new.product_id = s.product_id AND new.message_id = s.message_id))"
        if unstage
        else ""
    )
    return (
        "WITH new AS (INSERT INTO event_keys (product_id, message_id, timestamp) "
        f"SELECT product_id, message_id, timestamp FROM {stage} "
        "ON CONFLICT (product_id, message_id) DO NOTHING RETURNING product_id, message_id)"
        f"{old} INSERT INTO events ({names}) SELECT {staged} FROM {stage} s "
        "JOIN new ON new.product_id = s.product_id AND new.message_id = s.message_id "
        "RETURNING product_id, message_id"
    )
