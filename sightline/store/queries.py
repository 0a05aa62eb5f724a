"""Reading the store back: what the CLI and the dialects' read APIs show."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.model import Event, EventType
from sightline.store.schema import dead_letters, events


class DeadLetterRecord(msgspec.Struct, kw_only=True):
    id: int
    product_id: str | None
    reason: str
    detail: str
    envelope: Any
    created_at: datetime
    replayed_at: datetime | None = None


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_EVENT_FIELDS = frozenset(Event.__struct_fields__)


def event_from_row(row: sa.Row[Any]) -> Event:
    # The row's other columns (the stats' dimension columns) are derived from its context.
    data = {k: v for k, v in row._mapping.items() if k in _EVENT_FIELDS}
    for name in ("timestamp", "received_at", "sent_at", "original_timestamp"):
        data[name] = as_utc(data[name])
    data["type"] = EventType(data["type"])
    return Event(**data)


NEWEST_FIRST = (events.c.timestamp.desc(), events.c.id.desc())
"""Events' order in the read API: a range of ``ix_events_product_time`` read backwards
(the events of one timestamp sorted by id)."""


def product_ids(conn: sa.Connection) -> list[str]:
    """The products that have events, in order: a walk of the indexes' first column (each
    step one seek to the next product), not a scan of the events."""

    def after(current: Any) -> Any:
        found = sa.select(events.c.product_id).order_by(events.c.product_id).limit(1)
        # the first: a range too (every id is at least the empty string)
        bound = events.c.product_id >= "" if current is None else events.c.product_id > current
        return found.where(bound).scalar_subquery()

    seen = sa.select(after(None).label("id")).cte("product_ids", recursive=True)
    seen = seen.union_all(sa.select(after(seen.c.id)).where(seen.c.id.is_not(None)))
    return list(conn.execute(sa.select(seen.c.id).where(seen.c.id.is_not(None))).scalars())


def newest_of_every_product(
    conn: sa.Connection, where: Sequence[sa.ColumnElement[bool]], limit: int
) -> list[sa.Row[Any]]:
    """The newest ``limit`` events of any product matching ``where``: each product's newest
    (a range of its part of ``ix_events_product_time``, newest first), then the newest
    of those. Every index of ``events`` starts with the product: this reads a few rows
    of each instead of sorting the whole table."""
    rows: list[sa.Row[Any]] = []
    for product_id in product_ids(conn):
        rows.extend(
            conn.execute(
                sa.select(events)
                .where(events.c.product_id == product_id, *where)
                .order_by(*NEWEST_FIRST)
                .limit(limit)
            )
        )
    rows.sort(key=lambda row: (row.timestamp, row.id), reverse=True)
    return rows[:limit]


def recent_events(
    conn: sa.Connection, *, product_id: str | None = None, limit: int = 20
) -> list[Event]:
    """Newest first (by when they happened, then by id)."""
    if product_id is None:
        return [event_from_row(row) for row in newest_of_every_product(conn, (), limit)]
    query = (
        sa.select(events)
        .where(events.c.product_id == product_id)
        .order_by(*NEWEST_FIRST)
        .limit(limit)
    )
    return [event_from_row(row) for row in conn.execute(query)]


def list_dead_letters(
    conn: sa.Connection, *, include_replayed: bool = False, limit: int | None = None
) -> list[DeadLetterRecord]:
    query = sa.select(dead_letters).order_by(dead_letters.c.id)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    return [
        DeadLetterRecord(
            id=row.id,
            product_id=row.product_id,
            reason=row.reason,
            detail=row.detail,
            envelope=row.envelope,
            created_at=as_utc(row.created_at) or row.created_at,
            replayed_at=as_utc(row.replayed_at),
        )
        for row in conn.execute(query)
    ]


def mark_replayed(conn: sa.Connection, ids: list[int], when: datetime) -> None:
    if ids:
        conn.execute(
            sa.update(dead_letters).where(dead_letters.c.id.in_(ids)).values(replayed_at=when)
        )
