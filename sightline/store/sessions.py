"""Sessions: a visitor's visits, computed by the worker as it stores their events.

A **visitor** is an event's user id, else its anonymous id, within a product. Events
that carry the client's own session id (``sessionId``, GA4's ``session_id``, PostHog's
``$session_id`` ...) keep it: that session is the client's. Every other event with a
visitor gets a session id from Sightline by this rule (``GAP`` is 30 minutes):

- an event at time ``t`` joins the visitor's session that spans ``t`` (from its first
  to its last event), else the one whose last event is at most ``GAP`` before ``t``
  (the session is extended forward), else the one whose first event is at most ``GAP``
  after ``t`` (a late event extends it backward), the nearest one if several;
- otherwise it opens a new session: a gap of more than 30 minutes (31) splits, and a
  late event older than a session's first event by more than 30 minutes opens its own.

Events arrive out of order, across batches and workers: the rule compares event times
(``timestamp``), never arrival times, and within a batch a visitor's events are taken
in time order. A session is never merged with another once both exist (an event that
arrives later and falls between them joins the nearer one), and a stored event never
changes session. Two workers storing the same visitor's events at the same moment
may each open a session for them; the next event that falls between them joins one.

The ``sessions`` table holds one row per (product, visitor, session id) with what the
stats read (first and last event time, event, page-view and interaction counts, the
entry page and the first event's channel, source, country, browser and device). It is
updated in the batch's transaction by the **newly stored** events only (the events'
``ON CONFLICT DO NOTHING`` decides which), so a batch stored twice counts once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from sightline.ids import uuid7
from sightline.store.columns import EventColumns
from sightline.store.schema import sessions
from sightline.store.sql import (
    IN_CHUNK,
    bulk_insert,
    cached_statement,
    execute_rows,
    greatest,
    least,
)

GAP = timedelta(minutes=30)
VIEW_TYPES = frozenset(("page", "screen"))
INTERACTION_TYPES = frozenset(("track", "click"))
"""What a visitor did on purpose: a one-page session with one of these is not a bounce."""
FIRST_EVENT_COLUMNS = (
    "is_bot",
    "entry_page",
    "referrer_host",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "country",
    "browser",
    "os",
    "device_type",
)
DELTA_COLUMNS = (
    "product_id",
    "visitor",
    "session_id",
    "assigned",
    "started_at",
    "ended_at",
    "event_count",
    "page_count",
    "interaction_count",
    *FIRST_EVENT_COLUMNS,
)
"""What :func:`session_deltas` fills: the columns the upsert writes."""


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class _Span:
    __slots__ = ("end", "id", "start")

    def __init__(self, session_id: str, start: datetime, end: datetime) -> None:
        self.id = session_id
        self.start = start
        self.end = end

    def distance(self, moment: datetime) -> timedelta:
        if moment < self.start:
            return self.start - moment
        if moment > self.end:
            return moment - self.end
        return timedelta(0)


def place(spans: list[_Span], moment: datetime) -> _Span:
    """The session (of one visitor) an event at ``moment`` joins, opened if none: the rule."""
    best: _Span | None = None
    for span in spans:
        gap = span.distance(moment)
        if gap <= GAP and (best is None or gap < best.distance(moment)):
            best = span
    if best is None:
        best = _Span(uuid7(int(moment.timestamp() * 1000)), moment, moment)
        spans.append(best)
    else:
        best.start = min(best.start, moment)
        best.end = max(best.end, moment)
    return best


def assign_sessions(conn: sa.Connection, rows: EventColumns) -> set[str]:
    """Give each event row without a client session id its Sightline session id; the
    ids of the events given one."""
    pending: dict[tuple[str, str], list[int]] = {}  # (product, visitor) -> rows
    session_ids = rows["session_id"]
    for i, (product_id, session_id, user_id, anonymous_id) in enumerate(
        zip(rows["product_id"], session_ids, rows["user_id"], rows["anonymous_id"], strict=True)
    ):
        if session_id is None:
            visitor = user_id or anonymous_id  # (the user, else the anonymous id)
            if visitor is not None:
                pending.setdefault((product_id, visitor), []).append(i)
    if not pending:
        return set()
    times = [_utc(moment) for moment in rows["timestamp"]]
    known = _known_spans(conn, pending, times)
    for key, group in pending.items():
        group.sort(key=times.__getitem__)
        spans = known.get(key, [])
        for i in group:
            session_ids[i] = place(spans, times[i]).id
    ids = rows["id"]
    return {ids[i] for group in pending.values() for i in group}


def _known_spans(
    conn: sa.Connection, pending: dict[tuple[str, str], list[int]], times: list[datetime]
) -> dict[tuple[str, str], list[_Span]]:
    """The visitors' Sightline sessions that an event of the batch could join (``pending``:
    their rows' places in ``times``)."""
    by_product: dict[str, list[tuple[str, datetime, datetime]]] = {}
    for (product_id, visitor), group in pending.items():
        moments = [times[i] for i in group]
        by_product.setdefault(product_id, []).append((visitor, min(moments), max(moments)))
    query = cached_statement(conn, "known_sessions", _known_query)
    known: dict[tuple[str, str], list[_Span]] = {}
    for product_id, visitors in by_product.items():
        for start in range(0, len(visitors), IN_CHUNK):
            part = visitors[start : start + IN_CHUNK]
            params = {
                "product_id": product_id,
                "visitors": [v for v, _, _ in part],
                "low": min(low for _, low, _ in part) - GAP,
                "high": max(high for _, _, high in part) + GAP,
            }
            for visitor, session_id, started, ended in conn.execute(query, params):
                known.setdefault((product_id, visitor), []).append(
                    _Span(session_id, _utc(started), _utc(ended))
                )
    return known


def _known_query(_conn: sa.Connection) -> Any:
    c = sessions.c
    return sa.select(c.visitor, c.session_id, c.started_at, c.ended_at).where(
        c.product_id == sa.bindparam("product_id"),
        c.visitor.in_(sa.bindparam("visitors", expanding=True)),
        c.assigned.is_(True),
        c.ended_at >= sa.bindparam("low", type_=c.ended_at.type),
        c.started_at <= sa.bindparam("high", type_=c.started_at.type),
    )


def session_deltas(rows: EventColumns, assigned: set[str]) -> list[dict[str, Any]]:
    """What the (newly stored) event rows add to their sessions, one dict per session;
    ``assigned``: the ids of the events :func:`assign_sessions` gave a session."""
    deltas: dict[tuple[str, str, str], dict[str, Any]] = {}
    client_ids: set[tuple[str, str, str]] = set()
    first_columns = [rows[column] for column in _FIRST_EVENT_SOURCES.values()]
    for i, (product_id, user_id, anonymous_id, session_id, moment, kind, event_id) in enumerate(
        zip(
            rows["product_id"],
            rows["user_id"],
            rows["anonymous_id"],
            rows["session_id"],
            rows["timestamp"],
            rows["type"],
            rows["id"],
            strict=True,
        )
    ):
        if session_id is None:
            continue
        # (the visitor and _utc, inline: this runs per event)
        key = (product_id, user_id or anonymous_id or "", session_id)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = deltas.get(key)
        if delta is None or moment < delta["started_at"]:
            if delta is None:
                delta = deltas[key] = {
                    "product_id": key[0],
                    "visitor": key[1],
                    "session_id": session_id,
                    "assigned": True,
                    "started_at": moment,
                    "ended_at": moment,
                    "event_count": 0,
                    "page_count": 0,
                    "interaction_count": 0,
                }
            delta.update(zip(_FIRST_EVENT_SOURCES, map(itemgetter(i), first_columns), strict=True))
            delta["is_bot"] = bool(delta["is_bot"])
            delta["started_at"] = moment
        elif moment > delta["ended_at"]:  # (an earlier first event leaves the end as it was)
            delta["ended_at"] = moment
        delta["event_count"] += 1
        delta["page_count"] += kind in VIEW_TYPES
        delta["interaction_count"] += kind in INTERACTION_TYPES
        if event_id not in assigned:
            client_ids.add(key)
    for key in client_ids:
        deltas[key]["assigned"] = False
    return [deltas[k] for k in sorted(deltas)]


_FIRST_EVENT_SOURCES = {
    name: "page_path" if name == "entry_page" else name for name in FIRST_EVENT_COLUMNS
}
"""The event column each of a session's ``FIRST_EVENT_COLUMNS`` is its first event's."""


def record_sessions(conn: sa.Connection, new_rows: EventColumns, assigned: set[str]) -> None:
    """Add the newly stored events to their sessions (created when new): one statement.
    (PostgreSQL's writer aggregates its staged events in the database instead:
    :func:`staged_sql`.)"""
    deltas = session_deltas(new_rows, assigned)
    if deltas:
        statement = cached_statement(conn, "upsert_sessions", _upsert_statement)
        execute_rows(conn, statement, DELTA_COLUMNS, deltas)


def _upsert_statement(conn: sa.Connection) -> Any:
    insert = bulk_insert(conn, sessions, DELTA_COLUMNS)
    new, old = insert.excluded, sessions.c
    earlier = new.started_at < old.started_at
    return insert.on_conflict_do_update(
        index_elements=["product_id", "visitor", "session_id"],
        set_={
            "started_at": least(conn, old.started_at, new.started_at),
            "ended_at": greatest(conn, old.ended_at, new.ended_at),
            "event_count": old.event_count + new.event_count,
            "page_count": old.page_count + new.page_count,
            "interaction_count": old.interaction_count + new.interaction_count,
            **{
                name: sa.case((earlier, new[name]), else_=old[name]) for name in FIRST_EVENT_COLUMNS
            },
        },
    )


def staged_sql(stage: str) -> str:
    """PostgreSQL: the sessions upsert of the events in the writer's ``stage`` (its new
    events only), as :func:`session_deltas` computes them (a session's first event: the
    earliest, the first staged of equal times; the stage is filled by one ``COPY`` in
    batch order). Run by the driver with one parameter: the ids of the events
    :func:`assign_sessions` gave a session (a list)."""
    first = ", ".join(f"f.{name}" for name in FIRST_EVENT_COLUMNS[2:])
    counted = ", ".join(f"'{kind}'" for kind in sorted(VIEW_TYPES))
    acted = ", ".join(f"'{kind}'" for kind in sorted(INTERACTION_TYPES))
    earlier = "excluded.started_at < sessions.started_at"
    keep = ", ".join(
        f"{name} = CASE WHEN {earlier} THEN excluded.{name} ELSE sessions.{name} END"
        for name in FIRST_EVENT_COLUMNS
    )
    sql = (
        "WITH s AS (SELECT product_id, "
        "COALESCE(NULLIF(user_id, ''), NULLIF(anonymous_id, ''), '') AS visitor, "
        f'session_id, id, ctid AS pos, type, "timestamp", is_bot, page_path, '
        f"{', '.join(FIRST_EVENT_COLUMNS[2:])} FROM {stage} "
        "WHERE session_id IS NOT NULL), "
        "totals AS (SELECT product_id, visitor, session_id, "
        'bool_and(id = ANY(%s::text[])) AS assigned, min("timestamp") AS started_at, '
        'max("timestamp") AS ended_at, count(*) AS event_count, '
        f"count(*) FILTER (WHERE type IN ({counted})) AS page_count, "
        f"count(*) FILTER (WHERE type IN ({acted})) AS interaction_count "
        "FROM s GROUP BY product_id, visitor, session_id), "
        "firsts AS (SELECT DISTINCT ON (product_id, visitor, session_id) * FROM s "
        'ORDER BY product_id, visitor, session_id, "timestamp", pos) '
        f"INSERT INTO sessions ({', '.join(DELTA_COLUMNS)}) "
        "SELECT t.product_id, t.visitor, t.session_id, t.assigned, t.started_at, "
        "t.ended_at, t.event_count, t.page_count, t.interaction_count, f.is_bot, "
        f"f.page_path, {first} FROM totals t JOIN firsts f "
        "ON f.product_id = t.product_id AND f.visitor = t.visitor "
        "AND f.session_id = t.session_id "
        "ORDER BY t.product_id, t.visitor, t.session_id "
        "ON CONFLICT (product_id, visitor, session_id) DO UPDATE SET "
        "started_at = LEAST(sessions.started_at, excluded.started_at), "
        "ended_at = GREATEST(sessions.ended_at, excluded.ended_at), "
        "event_count = sessions.event_count + excluded.event_count, "
        "page_count = sessions.page_count + excluded.page_count, "
        "interaction_count = sessions.interaction_count + excluded.interaction_count, "
        f"{keep}"
    )
    return sql
