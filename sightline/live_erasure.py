"""An erased person's events out of the live stream (``sightline.live``) too.

The stream keeps the newest ~10,000 stored events in Redis for ``/api/v1/live`` to
resume from; an erasure removes the person's entries there (``XDEL``), by the rule the
store uses (``sightline.store.identity``: the event's user id is one of the ids, or it
has none and its anonymous id is one). Best effort: Redis unreachable leaves them to
roll over as new events arrive (counted as not done: ``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from sightline.live import FIELD_EVENT, FIELD_PRODUCT
from sightline.redis_keys import live_stream_key

log = logging.getLogger(__name__)

PAGE = 1_000
"""Stream entries read per ``XRANGE``."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def doomed(entries: Sequence[Any], product_id: str, ids: Collection[str]) -> list[Any]:
    """The ids of the ``XRANGE`` entries that are the person's events."""
    found: list[Any] = []
    for entry_id, fields in entries:
        product = fields.get(FIELD_PRODUCT.encode(), fields.get(FIELD_PRODUCT))
        raw = fields.get(FIELD_EVENT.encode(), fields.get(FIELD_EVENT))
        if product is None or raw is None or _text(product) != product_id:
            continue
        try:
            event = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            continue
        user, anonymous = event.get("user_id"), event.get("anonymous_id")
        if user in ids or (user is None and anonymous in ids):
            found.append(entry_id)
    return found


def _after(entry_id: Any) -> str:
    return "(" + _text(entry_id)


def purge_live(redis: Redis, queue_name: str, product_id: str, ids: Collection[str]) -> int | None:
    """Remove the person's entries from the live stream; how many (``None``: Redis failed)."""
    key, start, removed = live_stream_key(queue_name), "-", 0
    try:
        while True:
            entries = redis.xrange(key, min=start, max="+", count=PAGE) or []
            gone = doomed(entries, product_id, ids)
            if gone:
                removed += int(redis.xdel(key, *gone))
            if len(entries) < PAGE:
                return removed
            start = _after(entries[-1][0])
    except RedisError as exc:
        log.warning("could not purge the live stream of an erased person: %s", exc)
        return None


async def purge_live_async(
    redis: AsyncRedis, queue_name: str, product_id: str, ids: Collection[str]
) -> int | None:
    """:func:`purge_live` on the collector's asyncio client."""
    key, start, removed = live_stream_key(queue_name), "-", 0
    try:
        while True:
            entries = await redis.xrange(key, min=start, max="+", count=PAGE) or []
            gone = doomed(entries, product_id, ids)
            if gone:
                removed += int(await redis.xdel(key, *gone))
            if len(entries) < PAGE:
                return removed
            start = _after(entries[-1][0])
    except RedisError as exc:
        log.warning("could not purge the live stream of an erased person: %s", exc)
        return None
