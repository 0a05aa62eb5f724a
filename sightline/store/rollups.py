"""The stats' daily rollups, kept by the writer in each batch's transaction.

- ``visitor_days``: one row per (product, UTC day, bot flag, visitor) with their events
  and page views that day. A day's unique visitors are a count of rows instead of a
  ``COUNT(DISTINCT ...)`` over every event of the day; ``sightline.store.stats`` reads it
  for the totals and series of ranges of whole UTC days per day or week.
- ``value_days``: one row per (product, breakdown, bot flag, UTC day, value) with the
  events and page views of that value that day: a breakdown's events and page views
  over whole days are sums of these rows.
- ``value_visitors``: one row per (product, breakdown, bot flag, period, value, visitor)
  with a bit set for each day of the period the visitor had an event with that value
  (a period is ``PERIOD_DAYS`` UTC days; bit ``n`` is the period's ``n``-th day). A
  breakdown's unique visitors over a range of whole days are **exact**: the distinct
  visitors of the rows whose day bits meet the range's (a row per period a visitor came
  in, not per day nor per event). Unique visitors cannot be summed from daily counts;
  this keeps the set, which is much smaller than the events (see docs/stats.md).

Only the newly stored events count (idempotent with the events' ``ON CONFLICT`` rule).
Rows are written in key order (a stable lock order between workers), one
``INSERT ... ON CONFLICT DO UPDATE`` per table per batch. An erasure deletes a person's
``visitor_days`` and ``value_visitors`` rows (keyed by visitor) and subtracts their
events from ``value_days`` (:func:`unrecord_events`, in the transaction that deletes
the events).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import compress, repeat
from typing import Any, NamedTuple

import sqlalchemy as sa

from sightline.store.columns import EventColumns
from sightline.store.schema import value_days, value_visitors, visitor_days
from sightline.store.sql import bulk_insert, cached_statement, execute_columns

VIEW_TYPES = frozenset(("page", "screen"))
DELTA_COLUMNS = ("product_id", "day", "is_bot", "visitor", "is_user", "events", "pageviews")
VALUE_DAY_COLUMNS = ("product_id", "dimension", "is_bot", "day", "value", "events", "pageviews")
VALUE_VISITOR_COLUMNS = ("product_id", "dimension", "is_bot", "period", "value", "visitor", "days")
BREAKDOWN_COLUMNS: dict[str, str] = {
    "page": "page_path",
    "referrer": "referrer_host",
    "channel": "channel",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "country": "country",
    "browser": "browser",
    "os": "os",
    "device": "device_type",
    "event": "name",
}
"""Breakdown name -> the ``events`` column it groups by (``value_*`` rows are keyed by
the breakdown name)."""
VISITORS, USERS = "visitors", "users"
"""Two more ``value_visitors`` dimensions, value ``NO_VALUE``: every visitor (the
totals' unique visitors) and every user id (their unique users) of the period."""
NO_VALUE = ""
"""The ``value`` of rollup rows for events without the dimension (a NULL column; the
dimension columns are never empty strings, ``sightline.store.dimensions``)."""
PERIOD_DAYS = 63
"""Days per ``value_visitors`` row: bits 0-62 of a signed 64-bit integer."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_day(moment: datetime) -> datetime:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_number(moment: datetime) -> int:
    """Days since 1970-01-01 of the UTC day holding ``moment``."""
    return (utc_day(moment) - _EPOCH).days


def period_masks(start: datetime, end: datetime) -> dict[int, int]:
    """The ``value_visitors`` periods of the whole UTC days from ``start`` up to before
    ``end``, each with the bits of those days."""
    masks: dict[int, int] = {}
    for n in range(day_number(start), day_number(end)):
        period, bit = divmod(n, PERIOD_DAYS)
        masks[period] = masks.get(period, 0) | 1 << bit
    return masks


READ_COLUMNS = (
    "product_id",
    "is_bot",
    "timestamp",
    "type",
    "user_id",
    "anonymous_id",
    *BREAKDOWN_COLUMNS.values(),
)
"""What the rollups read of an event (the deltas of rows given as dicts: these columns)."""


class _Columns:
    """What the rollups read of event rows, column by column (one pass of C per column)."""

    __slots__ = ("anonymous", "bots", "days", "products", "rows", "users", "views")

    def __init__(self, rows: EventColumns) -> None:
        self.rows = rows
        self.products: list[str] = rows["product_id"]
        self.bots: list[bool] = list(map(bool, rows["is_bot"]))
        self.days = _days(rows["timestamp"])
        self.views: list[bool] = list(map(VIEW_TYPES.__contains__, rows["type"]))
        self.users: list[str | None] = rows["user_id"]
        self.anonymous: list[str | None] = rows["anonymous_id"]

    def column(self, name: str) -> list[Any]:
        return self.rows[name]


def _days(moments: list[datetime]) -> list[datetime]:
    """:func:`utc_day` of each moment, computed once per date of the UTC (or naive) ones."""
    found: dict[Any, datetime] = {}
    days: list[datetime] = []
    append = days.append
    for moment in moments:
        zone = moment.tzinfo
        if zone is UTC or zone is None:
            date = moment.date()
            day = found.get(date)
            if day is None:
                day = found[date] = utc_day(moment)
            append(day)
        else:
            append(utc_day(moment))
    return days


def _tally(
    keys: list[tuple[Any, ...]], views: list[bool]
) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """How many of ``keys`` there are of each, and how many of those are page views."""
    return Counter(keys), Counter(compress(keys, views))


def visitor_day_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What event rows add to ``visitor_days``, sorted by key (a stable lock order)."""
    cols = _Columns(EventColumns.from_rows(rows, READ_COLUMNS))
    return [dict(zip(DELTA_COLUMNS, row, strict=True)) for row in _visitor_day_rows(cols)]


def _visitor_day_rows(cols: _Columns) -> list[tuple[Any, ...]]:
    """:func:`visitor_day_deltas` as tuples of ``DELTA_COLUMNS``."""
    # `user_id or anonymous_id or ""`: an empty id is no id
    visitors = [u or a or "" for u, a in zip(cols.users, cols.anonymous, strict=True)]
    keys = list(zip(cols.products, cols.days, cols.bots, visitors, strict=True))
    events, views = _tally(keys, cols.views)
    users = set(compress(keys, map(operator.is_not, cols.users, repeat(None, len(keys)))))
    return [(*key, key in users, events[key], views[key]) for key in sorted(events)]


def value_deltas(
    rows: Iterable[dict[str, Any]], sign: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What event rows add to ``value_days`` (times ``sign``) and ``value_visitors``,
    each sorted by key."""
    cols = _Columns(EventColumns.from_rows(list(rows), READ_COLUMNS))
    day_rows, visitor_rows = _value_rows(cols, sign)
    return (
        [dict(zip(VALUE_DAY_COLUMNS, row, strict=True)) for row in day_rows],
        [dict(zip(VALUE_VISITOR_COLUMNS, row, strict=True)) for row in visitor_rows],
    )


def _value_rows(
    cols: _Columns, sign: int = 1
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """:func:`value_deltas` as tuples of ``VALUE_DAY_COLUMNS`` and ``VALUE_VISITOR_COLUMNS``.

    The rows are grouped by (product, bot flag, day), which a batch has few of; within a
    group each breakdown's values are counted with ``Counter`` and paired with their
    visitors in a set, in C: Python sees each distinct value, and each distinct
    (value, visitor), once. A missing value (``None``) becomes ``NO_VALUE`` then (merged
    with any ``NO_VALUE`` of the same key)."""
    n = len(cols.rows)
    # COALESCE(user_id, anonymous_id), as the stats count visitors
    visitors = [u if u is not None else a for u, a in zip(cols.users, cols.anonymous, strict=True)]
    groups: dict[tuple[str, bool, datetime], list[int]] = {}
    for i, group in enumerate(zip(cols.products, cols.bots, cols.days, strict=True)):
        places = groups.get(group)
        if places is None:
            groups[group] = [i]
        else:
            places.append(i)
    columns = [(name, cols.column(column)) for name, column in BREAKDOWN_COLUMNS.items()]
    counts: dict[tuple[Any, ...], list[int]] = {}
    bits: dict[tuple[Any, ...], int] = {}
    for (product_id, bot, day), places in groups.items():
        period, bit = divmod((day - _EPOCH).days, PERIOD_DAYS)
        mask = 1 << bit
        pick = _picker(places, n)
        views, who = pick(cols.views), pick(visitors)
        for name, column in columns:
            values = pick(column)
            viewed = Counter(compress(values, views))
            key: tuple[Any, ...]
            for value, count in Counter(values).items():
                key = (product_id, name, bot, day, NO_VALUE if value is None else value)
                found = counts.get(key)
                if found is None:
                    counts[key] = [count, viewed[value]]
                else:
                    found[0] += count
                    found[1] += viewed[value]
            for value, visitor in set(zip(values, who, strict=True)):
                if visitor is not None:
                    text = NO_VALUE if value is None else value
                    key = (product_id, name, bot, period, text, visitor)
                    bits[key] = bits.get(key, 0) | mask
        for name, ids in ((VISITORS, who), (USERS, pick(cols.users))):
            for visitor in set(ids):
                if visitor is not None:
                    key = (product_id, name, bot, period, NO_VALUE, visitor)
                    bits[key] = bits.get(key, 0) | mask
    day_rows = [(*k, counts[k][0] * sign, counts[k][1] * sign) for k in sorted(counts)]
    visitor_rows = [(*k, bits[k]) for k in sorted(bits)]
    return day_rows, visitor_rows


def _picker(places: list[int], n: int) -> Callable[[list[Any]], Sequence[Any]]:
    """Takes the values at ``places`` out of a column of ``n`` values."""
    if len(places) == n:
        return lambda column: column
    if len(places) == 1:
        return lambda column: [column[places[0]]]
    get = operator.itemgetter(*places)
    return lambda column: get(column)


class Deltas(NamedTuple):
    """What event rows add to the three rollups, as tuples of their columns, sorted."""

    visitor_days: list[tuple[Any, ...]]
    value_days: list[tuple[Any, ...]]
    value_visitors: list[tuple[Any, ...]]


def deltas_of(rows: EventColumns) -> Deltas:
    """What ``rows`` (event rows with their dimension columns) add to the rollups: what
    :func:`record_visitor_days` writes. Reads the rows' product, bot flag, time, type,
    user and anonymous ids, name and dimension columns only."""
    cols = _Columns(rows)
    return Deltas(_visitor_day_rows(cols), *_value_rows(cols))


def record_visitor_days(
    conn: sa.Connection, new_rows: EventColumns, deltas: Deltas | None = None
) -> None:
    """Add the newly stored events to the daily rollups (``visitor_days``,
    ``value_days``, ``value_visitors``): the writer's one hook for them, deltas computed
    here (``deltas``: computed already, :func:`deltas_of` these rows) and sent as arrays
    (SQLite: the rows of one ``executemany`` each). (PostgreSQL's writer aggregates its
    staged events in the database instead: :func:`staged_sql`; the rows' ~13 rollup keys
    each cost more to send than to compute there.)"""
    if not len(new_rows):
        return
    visitor_day_rows, day_rows, visitor_rows = deltas or deltas_of(new_rows)
    statement = cached_statement(conn, "upsert_visitor_days", _upsert_statement)
    execute_columns(conn, statement, DELTA_COLUMNS, list(zip(*visitor_day_rows, strict=True)))
    statement = cached_statement(conn, "upsert_value_days", _value_days_statement)
    execute_columns(conn, statement, VALUE_DAY_COLUMNS, list(zip(*day_rows, strict=True)))
    statement = cached_statement(conn, "upsert_value_visitors", _value_visitors_statement)
    execute_columns(conn, statement, VALUE_VISITOR_COLUMNS, list(zip(*visitor_rows, strict=True)))


def unrecord_events(conn: sa.Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Take events about to be deleted (an erasure) out of ``value_days``; rows left
    without events go. (``visitor_days`` and ``value_visitors`` rows are the erased
    visitor's own: the erasure deletes them.)"""
    day_rows, _ = value_deltas(rows, sign=-1)
    if not day_rows:
        return
    keys = ("product_id", "dimension", "is_bot", "day", "value")
    c = value_days.c
    key = [c[k] == sa.bindparam(f"k_{k}", type_=c[k].type) for k in keys]
    params = [
        {"d_events": r["events"], "d_pageviews": r["pageviews"], **{f"k_{k}": r[k] for k in keys}}
        for r in day_rows
    ]
    conn.execute(
        sa.update(value_days)
        .where(*key)
        .values(
            events=c.events + sa.bindparam("d_events"),
            pageviews=c.pageviews + sa.bindparam("d_pageviews"),
        ),
        params,
    )
    conn.execute(sa.delete(value_days).where(*key, c.events <= 0), params)


def _upsert_statement(conn: sa.Connection) -> Any:
    insert = bulk_insert(conn, visitor_days, DELTA_COLUMNS)
    new, old = insert.excluded, visitor_days.c
    return insert.on_conflict_do_update(
        index_elements=["product_id", "day", "is_bot", "visitor"],
        set_={
            "is_user": sa.or_(old.is_user, new.is_user),
            "events": old.events + new.events,
            "pageviews": old.pageviews + new.pageviews,
        },
    )


def _value_days_statement(conn: sa.Connection) -> Any:
    insert = bulk_insert(conn, value_days, VALUE_DAY_COLUMNS)
    new, old = insert.excluded, value_days.c
    return insert.on_conflict_do_update(
        index_elements=["product_id", "dimension", "is_bot", "day", "value"],
        set_={"events": old.events + new.events, "pageviews": old.pageviews + new.pageviews},
    )


def _value_visitors_statement(conn: sa.Connection) -> Any:
    insert = bulk_insert(conn, value_visitors, VALUE_VISITOR_COLUMNS)
    new, old = insert.excluded, value_visitors.c
    days = old.days.bitwise_or(new.days)
    # A visitor seen again on a day already set changes nothing: no row version written.
    return insert.on_conflict_do_update(
        index_elements=["product_id", "dimension", "is_bot", "period", "value", "visitor"],
        set_={"days": days},
        where=days != old.days,
    )


_PG_DAY = "date_trunc('day', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
_PG_VIEW = "type IN ('page', 'screen')"


def staged_sql(stage: str) -> tuple[str, ...]:
    """PostgreSQL: the rollup upserts of the events in the writer's ``stage`` (its new
    events only; statements without parameters), as :func:`visitor_day_deltas` and
    :func:`value_deltas` compute them (same keys, key order; the period of a day before
    1970 rounds down, as ``divmod`` does): ``visitor_days``, then ``value_days`` and
    ``value_visitors`` in one statement.

    The two breakdown tables share one expansion of the events (a row per event and
    breakdown, plus the ``visitors`` and ``users`` rows), grouped once by (breakdown,
    value, visitor, day) with the events and page views of each: ``value_days`` sums
    those groups per value and day, ``value_visitors`` ORs their days per period (a
    batch holds a few days: about as many groups as either table's rows). What an event
    gives every breakdown (its visitor, day number, page-view flag) is computed once per
    event (``OFFSET 0`` keeps that subquery from being pulled up into the expansion).
    The groups are formed in the "C" collation (bytes: the same groups, a deterministic
    collation's equality is byte equality), not the database's: a sort of ~13 rows an
    event by a locale (``strcoll``, no abbreviated keys) took half the time. The rows
    leave in the database's collation, sorted by key (each table's lock order, as
    before); ``value_days`` is the statement's own insert and ``value_visitors`` its
    data-modifying ``WITH``, which PostgreSQL runs after it: the same table order as
    the SQLite path.

    A ``value_visitors`` row that holds the days already (most of them: visitors come
    back the same day) is left out before the upsert, read through the key's index
    (``days`` is in it): an ``ON CONFLICT`` with nothing to change still locks the row
    and writes WAL for it. Bits are only ever added (an erasure deletes a visitor's rows
    only once their events can no longer be written: ``sightline.store.erasure``), so a
    row read as holding them still does at commit."""
    columns = ", ".join(sorted(set(BREAKDOWN_COLUMNS.values())))
    event = (
        f"SELECT product_id, is_bot, user_id, {columns}, "
        f"COALESCE(user_id, anonymous_id) AS who, {_PG_VIEW} AS viewed, "
        "(\"timestamp\" AT TIME ZONE 'UTC')::date - DATE '1970-01-01' AS n "
        f"FROM {stage} OFFSET 0"
    )
    seen = ", ".join(f"('{name}', {column}, who)" for name, column in BREAKDOWN_COLUMNS.items())
    period = f"floor(n / {PERIOD_DAYS}.0)::int"
    texts = ("product_id", "dimension", "value", "visitor")

    def restored(names: Sequence[str], prefix: str = "") -> list[str]:
        return [f'{prefix}{n} COLLATE "default"' if n in texts else prefix + n for n in names]

    day_key = ("product_id", "dimension", "is_bot", "n", "value")
    key = ("product_id", "dimension", "is_bot", "period", "value", "visitor")
    same_key = " AND ".join(
        f"v.{name} = {g}" for name, g in zip(key, restored(key, "g."), strict=True)
    )
    grouped = (
        'SELECT s.product_id COLLATE "C" AS product_id, d.dimension COLLATE "C" AS dimension, '
        "s.is_bot, s.n, COALESCE(d.value, '') COLLATE \"C\" AS value, "
        'd.visitor COLLATE "C" AS visitor, '
        "count(*) AS events, count(*) FILTER (WHERE s.viewed) AS pageviews "
        f"FROM ({event}) AS s CROSS JOIN LATERAL (VALUES {seen}, "
        f"('{VISITORS}', '{NO_VALUE}', who), ('{USERS}', '{NO_VALUE}', user_id)) "
        "AS d (dimension, value, visitor) GROUP BY 1, 2, 3, 4, 5, 6"
    )
    visitors = (
        "INSERT INTO value_visitors (product_id, dimension, is_bot, period, value, visitor, days) "
        f"SELECT {', '.join(restored(key, 'g.'))}, g.days "
        f"FROM (SELECT product_id, dimension, is_bot, {period} AS period, value, visitor, "
        f"bit_or(CAST(1 AS BIGINT) << (n - {PERIOD_DAYS} * {period})) AS days "
        "FROM x WHERE visitor IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6) AS g "
        # A scalar subquery, not a join: one probe of the key's index per row, whatever
        # the planner guesses of the (never analysed) stage.
        f"WHERE (SELECT v.days | g.days = v.days FROM value_visitors v WHERE {same_key}) "
        "IS NOT TRUE ORDER BY 1, 2, 3, 4, 5, 6 "
        "ON CONFLICT (product_id, dimension, is_bot, period, value, visitor) DO UPDATE SET "
        "days = value_visitors.days | excluded.days "
        "WHERE (value_visitors.days | excluded.days) <> value_visitors.days"
    )
    day_columns = restored(day_key)
    day_columns[3] = "(DATE '1970-01-01' + n)::timestamp AT TIME ZONE 'UTC'"
    sql = (
        # visitor_days: `user_id or anonymous_id or ""` in Python's sense (an empty id
        # is no id).
        "INSERT INTO visitor_days (product_id, day, is_bot, visitor, is_user, events, pageviews) "
        f"SELECT product_id, {_PG_DAY}, is_bot, "
        "COALESCE(NULLIF(user_id, ''), NULLIF(anonymous_id, ''), ''), "
        f"bool_or(user_id IS NOT NULL), count(*), count(*) FILTER (WHERE {_PG_VIEW}) "
        f"FROM {stage} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
        "ON CONFLICT (product_id, day, is_bot, visitor) DO UPDATE SET "
        "is_user = visitor_days.is_user OR excluded.is_user, "
        "events = visitor_days.events + excluded.events, "
        "pageviews = visitor_days.pageviews + excluded.pageviews",
        f"WITH x AS MATERIALIZED ({grouped}), vv AS ({visitors}) "
        "INSERT INTO value_days (product_id, dimension, is_bot, day, value, events, pageviews) "
        f"SELECT {', '.join(day_columns)}, sum(events), sum(pageviews) "
        f"FROM x WHERE dimension NOT IN ('{VISITORS}', '{USERS}') "
        f"GROUP BY {', '.join(day_key)} ORDER BY 1, 2, 3, 4, 5 "
        "ON CONFLICT (product_id, dimension, is_bot, day, value) DO UPDATE SET "
        "events = value_days.events + excluded.events, "
        "pageviews = value_days.pageviews + excluded.pageviews",
    )
    return sql
