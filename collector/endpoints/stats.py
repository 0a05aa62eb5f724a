"""``GET /api/v1/stats``: traffic over a time range, per interval, with breakdowns.

A read route like the rest of ``/api/v1`` (``collector.endpoints.api``): a product's
read key reads its own product (another is a 403), an admin token or the dashboard
session reads any product, or every product when none is named. The numbers come from
``sightline.store.stats`` (definitions there and in the README, "Reading the data").
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.endpoints.api import PREFIX, PRODUCT, READ_SCHEMES
from collector.readauth import require_reader
from collector.routing import READ_ERRORS, Endpoint
from sightline.errors import FieldError, InvalidInput
from sightline.store.lookups import read
from sightline.store.stats import BREAKDOWNS, INTERVALS, Stats, StatsQuery, buckets, traffic_stats

MAX_RANGE = timedelta(days=400)
MAX_POINTS = 1000
MAX_BREAKDOWN_ROWS = 100
DEFAULT_RANGE = timedelta(days=30)
_json = msgspec.json.Encoder()


def _bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", [FieldError(field, reason)])


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, "an ISO 8601 time, e.g. 2026-11-30T00:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def stats_query(request: Request, product: str | None) -> StatsQuery:
    """The request's parameters, checked."""
    params = request.query_params
    end = _time(request, "to") or datetime.now(UTC)
    start = _time(request, "from") or end - DEFAULT_RANGE
    if not start < end:
        raise _bad("from", "before to")
    if end - start > MAX_RANGE:
        raise _bad("from", f"at most {MAX_RANGE.days} days before to")
    interval = params.get("interval") or "day"
    if interval not in INTERVALS:
        raise _bad("interval", f"one of {', '.join(INTERVALS)}")
    if len(buckets(start, end, interval)) > MAX_POINTS:
        raise _bad("interval", f"at most {MAX_POINTS} intervals: a longer interval or range")
    wanted = tuple(
        part for value in params.getlist("breakdown") for part in value.split(",") if part
    )
    for by in wanted:
        if by not in BREAKDOWNS:
            raise _bad("breakdown", f"any of {', '.join(BREAKDOWNS)}")
    bots = params.get("bots") or "exclude"
    if bots not in ("exclude", "include"):
        raise _bad("bots", "exclude or include")
    raw_limit = params.get("limit") or "10"
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise _bad("limit", f"an integer from 1 to {MAX_BREAKDOWN_ROWS}")
    return StatsQuery(
        product_id=product,
        start=start,
        end=end,
        interval=interval,
        breakdowns=tuple(dict.fromkeys(wanted)),
        include_bots=bots == "include",
        limit=int(raw_limit),
    )


async def stats(request: Request) -> Response:
    reader = await require_reader(request)
    product = reader.product(request.query_params.get("product") or None)
    query = stats_query(request, product)
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: traffic_stats(conn, query)
    )
    return Response(_json.encode(found), media_type="application/json")


def _param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", **schema},
        "description": description,
    }


ENDPOINTS = (
    Endpoint(
        PREFIX + "/stats",
        ("GET",),
        stats,
        "api.stats",
        "Traffic of a time range: counts, unique users and visitors, sessions and bounce "
        "rate per interval, with breakdowns",
        schemes=READ_SCHEMES,
        reads=True,
        responses={200: Stats, **READ_ERRORS},
        parameters=(
            PRODUCT,
            _param("from", "Start, inclusive (default: 30 days before to)", format="date-time"),
            _param("to", "End, exclusive (default: now)", format="date-time"),
            _param(
                "interval", "Series interval (UTC; weeks start on Monday)", enum=list(INTERVALS)
            ),
            _param(
                "breakdown",
                "Dimensions to break down by, comma-separated or repeated: "
                + ", ".join(BREAKDOWNS),
            ),
            _param("limit", "Rows per breakdown, 1 to 100 (default 10)", pattern="^[0-9]{1,3}$"),
            _param("bots", "include: count events flagged as bots", enum=["exclude", "include"]),
        ),
    ),
)
