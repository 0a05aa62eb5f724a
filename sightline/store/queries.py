"""Reading the store back: what the CLI and the dialects' read APIs show."""

from __future__ import annotations

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


def recent_events(
    conn: sa.Connection, *, product_id: str | None = None, limit: int = 20
) -> list[Event]:
    """Newest first (by when they happened, then by id)."""
    query = sa.select(events).order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(limit)
    if product_id is not None:
        query = query.where(events.c.product_id == product_id)
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
