"""The stats' daily rollup: one row per (product, UTC day, bot flag, visitor).

Counting a day's unique visitors over raw events means a ``COUNT(DISTINCT ...)`` over
every event of the day; over ``visitor_days`` it is a count of rows (a visitor's row
holds their events and page views of that day). ``sightline.store.stats`` reads it for
ranges of whole UTC days per day or week, and the events table otherwise. The writer
adds the newly stored events of each batch in the batch's transaction (idempotent with
the events' ``ON CONFLICT`` rule: only new events count).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from sightline.store.schema import visitor_days
from sightline.store.sql import bulk_insert, cached_statement, execute_rows

VIEW_TYPES = frozenset(("page", "screen"))
DELTA_COLUMNS = ("product_id", "day", "is_bot", "visitor", "is_user", "events", "pageviews")


def utc_day(moment: datetime) -> datetime:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def visitor_day_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What event rows add to ``visitor_days``, sorted by key (a stable lock order)."""
    deltas: dict[tuple[str, datetime, bool, str], dict[str, Any]] = {}
    for row in rows:
        user_id = row["user_id"]
        visitor = user_id or row["anonymous_id"] or ""
        key = (row["product_id"], utc_day(row["timestamp"]), bool(row["is_bot"]), visitor)
        delta = deltas.get(key)
        if delta is None:
            delta = deltas[key] = {
                "product_id": key[0],
                "day": key[1],
                "is_bot": key[2],
                "visitor": visitor,
                "is_user": False,
                "events": 0,
                "pageviews": 0,
            }
        delta["is_user"] = delta["is_user"] or user_id is not None
        delta["events"] += 1
        delta["pageviews"] += row["type"] in VIEW_TYPES
    return [deltas[k] for k in sorted(deltas)]


def record_visitor_days(conn: sa.Connection, new_rows: list[dict[str, Any]]) -> None:
    """Add the newly stored events to the daily rollup."""
    deltas = visitor_day_deltas(new_rows)
    if deltas:
        statement = cached_statement(conn, "upsert_visitor_days", _upsert_statement)
        execute_rows(conn, statement, DELTA_COLUMNS, deltas)


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
