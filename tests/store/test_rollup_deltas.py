"""The rollups' deltas (computed column by column, grouped, counted in C) against the plain
per-row rule they implement, on random rows: several products, bots, days on both sides
of a ``value_visitors`` period boundary, naive and non-UTC times, missing and empty
values, events without a visitor, and a negative sign (an erasure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sightline.store.rollups import (
    BREAKDOWN_COLUMNS,
    NO_VALUE,
    PERIOD_DAYS,
    USERS,
    VIEW_TYPES,
    VISITORS,
    utc_day,
    value_deltas,
    visitor_day_deltas,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The first day of a period, so the rows straddle a period boundary.
_BOUNDARY = _EPOCH + timedelta(days=PERIOD_DAYS * 327)


def _reference_visitor_days(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deltas: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        user_id = row["user_id"]
        visitor = user_id or row["anonymous_id"] or ""
        key = (row["product_id"], utc_day(row["timestamp"]), bool(row["is_bot"]), visitor)
        delta = deltas.setdefault(
            key,
            {
                "product_id": key[0],
                "day": key[1],
                "is_bot": key[2],
                "visitor": visitor,
                "is_user": False,
                "events": 0,
                "pageviews": 0,
            },
        )
        delta["is_user"] = delta["is_user"] or user_id is not None
        delta["events"] += 1
        delta["pageviews"] += row["type"] in VIEW_TYPES
    return [deltas[k] for k in sorted(deltas)]


def _reference_values(
    rows: list[dict[str, Any]], sign: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    counts: dict[tuple[Any, ...], list[int]] = {}
    seen: dict[tuple[Any, ...], int] = {}
    for row in rows:
        day = utc_day(row["timestamp"])
        period, bit = divmod((day - _EPOCH).days, PERIOD_DAYS)
        product_id, bot = row["product_id"], bool(row["is_bot"])
        view = sign if row["type"] in VIEW_TYPES else 0
        user_id = row["user_id"]
        visitor = user_id if user_id is not None else row["anonymous_id"]
        keys = [
            (name, NO_VALUE if row[column] is None else row[column])
            for name, column in BREAKDOWN_COLUMNS.items()
        ]
        for name, value in keys:
            count = counts.setdefault((product_id, name, bot, day, value), [0, 0])
            count[0] += sign
            count[1] += view
        who = [(name, value, visitor) for name, value in keys]
        who += [(VISITORS, NO_VALUE, visitor), (USERS, NO_VALUE, user_id)]
        for name, value, person in who:
            if person is not None:
                key = (product_id, name, bot, period, value, person)
                seen[key] = seen.get(key, 0) | 1 << bit
    day_rows = [
        {
            "product_id": k[0],
            "dimension": k[1],
            "is_bot": k[2],
            "day": k[3],
            "value": k[4],
            "events": counts[k][0],
            "pageviews": counts[k][1],
        }
        for k in sorted(counts)
    ]
    visitor_rows = [
        {
            "product_id": k[0],
            "dimension": k[1],
            "is_bot": k[2],
            "period": k[3],
            "value": k[4],
            "visitor": k[5],
            "days": seen[k],
        }
        for k in sorted(seen)
    ]
    return day_rows, visitor_rows


def _rows(rng: random.Random, count: int) -> list[dict[str, Any]]:
    zones = [UTC, None, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]
    rows = []
    for _ in range(count):
        moment = _BOUNDARY + timedelta(minutes=rng.randrange(-3 * 24 * 60, 3 * 24 * 60))
        zone = rng.choice(zones)
        timestamp = moment.replace(tzinfo=None) if zone is None else moment.astimezone(zone)
        user_id = rng.choice([None, None, "", "u1", "u2"])
        row: dict[str, Any] = {
            "product_id": rng.choice(["p1", "p2"]),
            "timestamp": timestamp,
            "is_bot": rng.choice([False, False, True, 0, 1]),
            "type": rng.choice(["page", "screen", "track", "click", "identify"]),
            "user_id": user_id,
            "anonymous_id": rng.choice([None, "", "a1", "a2", "a3"]),
        }
        for column in BREAKDOWN_COLUMNS.values():
            row[column] = rng.choice([None, None, "", "x", "y"])
        row["name"] = rng.choice(["Home", "", "Signed Up"])
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(20))
def test_the_deltas_are_the_per_row_rule(seed: int) -> None:
    rng = random.Random(seed)
    rows = _rows(rng, rng.choice([1, 2, 7, 50, 400]))
    assert visitor_day_deltas(rows) == _reference_visitor_days(rows)
    for sign in (1, -1):
        assert value_deltas(rows, sign) == _reference_values(rows, sign)
    assert value_deltas(iter(rows)) == _reference_values(rows, 1)


def test_no_rows_no_deltas() -> None:
    assert visitor_day_deltas([]) == []
    assert value_deltas([]) == ([], [])
