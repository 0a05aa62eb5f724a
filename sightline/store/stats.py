"""Traffic stats (``GET /api/v1/stats``): counts, uniques, sessions and bounce rate.

Named functions over a connection, portable between SQLite and PostgreSQL: the
dimensions are plain columns of ``events`` that the writer fills from the enriched
context (``sightline.store.dimensions``), sessions come from the ``sessions`` table the
worker keeps (``sightline.store.sessions``). Times are UTC; intervals start on the hour,
at midnight, or on Monday at midnight (ISO weeks). Ranges of whole UTC days read the
daily rollups the writer keeps (``sightline.store.rollups``): the same, exact, numbers
as the events give (``StatsQuery(rollups=False)`` reads the events; tests compare).

Definitions:

- **events**: stored events of every type; **pageviews**: ``page`` and ``screen`` events;
- **users**: distinct user ids; **visitors**: distinct user-id-else-anonymous-id (a
  visitor who logs in during the range counts once as the anonymous id and once as the
  user);
- **sessions**: sessions that started in the interval (bots apart unless included);
  **bounces**: sessions with exactly one page view and no interaction (``track`` or
  ``click``); **bounce_rate**: bounces / sessions with a page view.
- Bots (``is_bot``) are left out unless ``include_bots``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.store.rollups import (
    BREAKDOWN_COLUMNS,
    NO_VALUE,
    USERS,
    VISITORS,
    period_masks,
    utc_day,
)
from sightline.store.schema import events, sessions, value_days, value_visitors, visitor_days

INTERVALS = ("hour", "day", "week")
BREAKDOWNS: dict[str, str] = BREAKDOWN_COLUMNS
"""Breakdown name -> the ``events`` column it groups by."""
VIEW_TYPES = ("page", "screen")
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


class StatsQuery(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str | None
    """``None``: every product (an admin)."""
    start: datetime
    """Inclusive."""
    end: datetime
    """Exclusive."""
    interval: str = "day"
    breakdowns: tuple[str, ...] = ()
    include_bots: bool = False
    limit: int = 10
    """Rows per breakdown (the most visitors first)."""
    rollups: bool = True
    """Read the daily rollup where it answers exactly (whole UTC days, per day or week)."""


class Counts(msgspec.Struct, kw_only=True):
    events: int = 0
    pageviews: int = 0
    users: int = 0
    visitors: int = 0
    sessions: int = 0
    bounces: int = 0
    bounce_rate: float | None = None
    """Bounces / sessions with a page view; ``null`` without such sessions."""


class Point(Counts, kw_only=True):
    start: datetime
    """The interval's first moment (UTC)."""


class BreakdownRow(msgspec.Struct, kw_only=True):
    value: str | None
    """``null``: events without this dimension (no page, no referrer ...)."""
    events: int
    pageviews: int
    visitors: int


class Breakdown(msgspec.Struct, kw_only=True):
    by: str
    rows: list[BreakdownRow]


class Stats(msgspec.Struct, kw_only=True):
    product_id: str | None
    start: datetime
    end: datetime
    interval: str
    include_bots: bool
    totals: Counts
    series: list[Point]
    breakdowns: list[Breakdown] = msgspec.field(default_factory=list)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def interval_start(moment: datetime, interval: str) -> datetime:
    """The start of the interval holding ``moment`` (UTC)."""
    moment = _utc(moment)
    if interval == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if interval == "day" else day - timedelta(days=day.weekday())


def buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    """Every interval start from the one holding ``start`` up to before ``end``."""
    found: list[datetime] = []
    current, end = interval_start(start, interval), _utc(end)
    while current < end:
        found.append(current)
        current += _STEP[interval]
    return found


def _bucket(conn: sa.Connection, column: Any, interval: str) -> Any:
    if conn.dialect.name == "postgresql":
        return sa.func.date_trunc(interval, sa.func.timezone("UTC", column))
    # SQLite stores the UTC wall clock as text: 'YYYY-MM-DD HH:MM:SS.ffffff'.
    if interval == "hour":
        return sa.func.substr(column, 1, 13)
    day = sa.func.substr(column, 1, 10)
    return day if interval == "day" else sa.func.date(day, "-6 days", "weekday 1")


def _bucket_value(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _utc(value)
    text = str(value)
    if len(text) == 13:  # 'YYYY-MM-DD HH'
        text += ":00"
    return _utc(datetime.fromisoformat(text))


def _event_where(query: StatsQuery) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if query.product_id is not None:
        where.append(events.c.product_id == query.product_id)
    if not query.include_bots:
        where.append(events.c.is_bot.is_(False))
    where += [events.c.timestamp >= _utc(query.start), events.c.timestamp < _utc(query.end)]
    return where


def _session_where(query: StatsQuery) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if query.product_id is not None:
        where.append(sessions.c.product_id == query.product_id)
    if not query.include_bots:
        where.append(sessions.c.is_bot.is_(False))
    where += [sessions.c.started_at >= _utc(query.start), sessions.c.started_at < _utc(query.end)]
    return where


def _visitor() -> Any:
    return sa.func.coalesce(events.c.user_id, events.c.anonymous_id)


def _views() -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((events.c.type.in_(VIEW_TYPES), 1), else_=0)), 0)


def _event_counts() -> list[Any]:
    return [
        sa.func.count().label("events"),
        _views().label("pageviews"),
        sa.func.count(sa.distinct(events.c.user_id)).label("users"),
        sa.func.count(sa.distinct(_visitor())).label("visitors"),
    ]


def _session_counts() -> list[Any]:
    c = sessions.c
    bounce = sa.and_(c.page_count == 1, c.interaction_count == 0)
    return [
        sa.func.count().label("sessions"),
        sa.func.coalesce(sa.func.sum(sa.case((bounce, 1), else_=0)), 0).label("bounces"),
        sa.func.coalesce(sa.func.sum(sa.case((c.page_count > 0, 1), else_=0)), 0).label("viewed"),
    ]


def _fill_sessions(counts: Counts, sessions_: int, bounces: int, viewed: int) -> None:
    counts.sessions, counts.bounces = int(sessions_), int(bounces)
    counts.bounce_rate = round(int(bounces) / int(viewed), 4) if viewed else None


def uses_rollup(query: StatsQuery) -> bool:
    """Whether ``visitor_days`` answers the query's event counts: whole UTC days."""
    start, end = _utc(query.start), _utc(query.end)
    return (
        query.rollups
        and query.interval in ("day", "week")
        and start == utc_day(start)
        and end == utc_day(end)
    )


def _rollup_where(query: StatsQuery) -> list[sa.ColumnElement[bool]]:
    c = visitor_days.c
    where: list[sa.ColumnElement[bool]] = []
    if query.product_id is not None:
        where.append(c.product_id == query.product_id)
    if not query.include_bots:
        where.append(c.is_bot.is_(False))
    where += [c.day >= _utc(query.start), c.day < _utc(query.end)]
    return where


def _rollup_counts(one_row_per_visitor: bool) -> list[Any]:
    """Counts over ``visitor_days`` rows: a sum where each group holds a visitor once
    (one product, one day, bots apart), else distinct visitors."""
    c = visitor_days.c
    named = c.visitor != ""
    users: Any
    visitors: Any
    if one_row_per_visitor:
        users = sa.func.sum(sa.case((c.is_user, 1), else_=0))
        visitors = sa.func.sum(sa.case((named, 1), else_=0))
    else:
        users = sa.func.count(sa.distinct(sa.case((c.is_user, c.visitor))))
        visitors = sa.func.count(sa.distinct(sa.case((named, c.visitor))))
    return [
        sa.func.coalesce(sa.func.sum(c.events), 0).label("events"),
        sa.func.coalesce(sa.func.sum(c.pageviews), 0).label("pageviews"),
        sa.func.coalesce(users, 0).label("users"),
        sa.func.coalesce(visitors, 0).label("visitors"),
    ]


def _event_series(conn: sa.Connection, query: StatsQuery) -> Any:
    if uses_rollup(query):
        bucket = (
            visitor_days.c.day
            if query.interval == "day"
            else _bucket(conn, visitor_days.c.day, query.interval)
        ).label("bucket")
        single = query.interval == "day" and query.product_id is not None
        counts = _rollup_counts(single and not query.include_bots)
        return conn.execute(
            sa.select(bucket, *counts).where(*_rollup_where(query)).group_by(bucket)
        )
    bucket = _bucket(conn, events.c.timestamp, query.interval).label("bucket")
    return conn.execute(
        sa.select(bucket, *_event_counts()).where(*_event_where(query)).group_by(bucket)
    )


def traffic_series(conn: sa.Connection, query: StatsQuery) -> list[Point]:
    """One point per interval of the range (zeros included), oldest first."""
    points = {b: Point(start=b) for b in buckets(query.start, query.end, query.interval)}
    rows = _event_series(conn, query)
    for row in rows:
        point = points.get(_bucket_value(row.bucket))
        if point is not None:
            point.events, point.pageviews = int(row.events), int(row.pageviews)
            point.users, point.visitors = int(row.users), int(row.visitors)
    started = _bucket(conn, sessions.c.started_at, query.interval).label("bucket")
    rows = conn.execute(
        sa.select(started, *_session_counts()).where(*_session_where(query)).group_by(started)
    )
    for row in rows:
        point = points.get(_bucket_value(row.bucket))
        if point is not None:
            _fill_sessions(point, row.sessions, row.bounces, row.viewed)
    return list(points.values())


def _rollup_totals(conn: sa.Connection, query: StatsQuery, totals: Counts) -> None:
    """Whole UTC days: events and page views summed over the ``event`` breakdown's
    ``value_days`` rows (every event has a name), unique visitors and users counted in
    ``value_visitors`` (its ``visitors`` and ``users`` dimensions)."""
    d = value_days.c
    where = [d.dimension == "event", d.day >= _utc(query.start), d.day < _utc(query.end)]
    if query.product_id is not None:
        where.append(d.product_id == query.product_id)
    if not query.include_bots:
        where.append(d.is_bot.is_(False))
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(d.events), 0).label("events"),
            sa.func.coalesce(sa.func.sum(d.pageviews), 0).label("pageviews"),
        ).where(*where)
    ).one()
    totals.events, totals.pageviews = int(row.events), int(row.pageviews)
    for name in (VISITORS, USERS):
        seen, unique = _seen(query, name)
        count = int(conn.execute(sa.select(unique).where(*seen)).scalar_one())
        if name == VISITORS:
            totals.visitors = count
        else:
            totals.users = count


def _seen(query: StatsQuery, dimension: str) -> tuple[list[sa.ColumnElement[bool]], Any]:
    """The ``value_visitors`` rows of ``dimension`` whose day bits meet the range's, and
    how to count their distinct visitors."""
    v = value_visitors.c
    masks = period_masks(_utc(query.start), _utc(query.end))
    low, high = min(masks), max(masks)
    where: list[sa.ColumnElement[bool]] = [v.dimension == dimension]
    if query.product_id is not None:
        where.append(v.product_id == query.product_id)
    if not query.include_bots:
        where.append(v.is_bot.is_(False))
    if low == high:
        where += [v.period == low, v.days.bitwise_and(sa.literal(masks[low], sa.BigInteger)) != 0]
    else:
        mask = sa.case({p: sa.literal(m, sa.BigInteger) for p, m in masks.items()}, value=v.period)
        where += [v.period.between(low, high), v.days.bitwise_and(mask) != 0]
    # One row per visitor (and value) when a single product, period and bot flag are read.
    single = low == high and query.product_id is not None and not query.include_bots
    return where, sa.func.count() if single else sa.func.count(sa.distinct(v.visitor))


def traffic_totals(conn: sa.Connection, query: StatsQuery) -> Counts:
    """The whole range's counts (uniques over the range, not summed per interval)."""
    totals = Counts()
    if uses_value_rollup(query):
        _rollup_totals(conn, query, totals)
    else:
        row = conn.execute(sa.select(*_event_counts()).where(*_event_where(query))).one()
        totals.events, totals.pageviews = int(row.events), int(row.pageviews)
        totals.users, totals.visitors = int(row.users), int(row.visitors)
    row = conn.execute(sa.select(*_session_counts()).where(*_session_where(query))).one()
    _fill_sessions(totals, row.sessions, row.bounces, row.viewed)
    return totals


def uses_value_rollup(query: StatsQuery) -> bool:
    """Whether ``value_days`` and ``value_visitors`` answer the breakdowns: whole UTC days
    (any interval: a breakdown covers the whole range)."""
    start, end = _utc(query.start), _utc(query.end)
    return query.rollups and start == utc_day(start) and end == utc_day(end)


def breakdown(conn: sa.Connection, query: StatsQuery, by: str) -> Breakdown:
    """The top values of one dimension (``BREAKDOWNS``) by visitors, then events."""
    if uses_value_rollup(query):
        rows = _rollup_breakdown(conn, query, by)
    else:
        column = events.c[BREAKDOWNS[by]].label("value")
        visitors = sa.func.count(sa.distinct(_visitor())).label("visitors")
        count = sa.func.count().label("events")
        rows = conn.execute(
            sa.select(column, count, _views().label("pageviews"), visitors)
            .where(*_event_where(query))
            .group_by(column)
            .order_by(visitors.desc(), count.desc(), column)
            .limit(query.limit)
        )
    return Breakdown(
        by=by,
        rows=[
            BreakdownRow(
                value=row.value,
                events=int(row.events),
                pageviews=int(row.pageviews),
                visitors=int(row.visitors),
            )
            for row in rows
        ],
    )


def _rollup_breakdown(conn: sa.Connection, query: StatsQuery, by: str) -> Any:
    """A breakdown of whole UTC days: events and page views summed from ``value_days``,
    exact unique visitors from ``value_visitors`` (distinct visitors of the rows whose
    day bits meet the range's); the same rows, in the same order, as from the events."""
    start, end = _utc(query.start), _utc(query.end)
    d = value_days.c
    where = [d.dimension == by, d.day >= start, d.day < end]
    if query.product_id is not None:
        where.append(d.product_id == query.product_id)
    if not query.include_bots:
        where.append(d.is_bot.is_(False))
    counts = (
        sa.select(
            d.value,
            sa.func.sum(d.events).label("events"),
            sa.func.sum(d.pageviews).label("pageviews"),
        )
        .where(*where)
        .group_by(d.value)
        .subquery("counts")
    )
    where, unique = _seen(query, by)
    v = value_visitors.c
    seen = (
        sa.select(v.value, unique.label("visitors"))
        .where(*where)
        .group_by(v.value)
        .subquery("seen")
    )
    visitors = sa.func.coalesce(seen.c.visitors, 0).label("visitors")
    value = counts.c.value if by == "event" else sa.func.nullif(counts.c.value, NO_VALUE)
    return conn.execute(
        sa.select(value.label("value"), counts.c.events, counts.c.pageviews, visitors)
        .select_from(counts.outerjoin(seen, seen.c.value == counts.c.value))
        .order_by(visitors.desc(), counts.c.events.desc(), value)
        .limit(query.limit)
    )


def traffic_stats(conn: sa.Connection, query: StatsQuery) -> Stats:
    """Totals, the series per interval and the asked breakdowns of a range."""
    return Stats(
        product_id=query.product_id,
        start=_utc(query.start),
        end=_utc(query.end),
        interval=query.interval,
        include_bots=query.include_bots,
        totals=traffic_totals(conn, query),
        series=traffic_series(conn, query),
        breakdowns=[breakdown(conn, query, by) for by in query.breakdowns],
    )
