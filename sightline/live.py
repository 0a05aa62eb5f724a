"""The live stream of stored events: what workers publish and collectors serve as SSE.

After a batch's transaction commits, the worker appends each newly stored event to a
capped Redis stream per queue (``XADD sightline:<queue>:live MAXLEN ~ LIVE_WINDOW``)
with its product, its type and its canonical record as JSON, the whole batch in one
pipeline (one round trip). Collectors read the stream (``/api/v1/live``); a stream id
is the SSE ``id``, so a client that reconnects with ``Last-Event-ID`` gets exactly what
it missed (``XRANGE`` after that id) as long as it is still among the newest
``LIVE_WINDOW`` entries.

Only while someone watches. A collector serving ``/api/v1/live`` to at least one client
keeps the key ``sightline:<queue>:live:viewers`` alive (``SET ... EX VIEWERS_TTL``,
refreshed every ``VIEWERS_REFRESH`` seconds while a stream is open); a worker looks at
it at most once per ``CHECK_SECONDS`` (:class:`Viewers`) and publishes nothing while it
is absent: with nobody watching, storing an event costs no Redis write for the live
view. Events stored while nobody watched are in the store, not in the stream; when a
worker sees viewers again after it saw none, it first appends a **gap** entry
(``FIELD_GAP``): the collector turns it into the SSE ``event: reset`` (some events may
be missing: reload them from ``/api/v1/events``), for live clients and for those
resuming from before it. A viewer that reconnects within ``VIEWERS_TTL`` of leaving
misses nothing.

Publishing is best effort and never fails the job: the events are stored; a Redis
error here only means a live viewer misses them (they are in the store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from redis import Redis
from redis.exceptions import RedisError

from sightline.redis_keys import live_stream_key, live_viewers_key

log = logging.getLogger(__name__)

LIVE_WINDOW = 10_000
"""About how many of the newest stored events a reconnecting client can resume from."""
FIELD_PRODUCT = "p"
FIELD_TYPE = "t"
FIELD_EVENT = "e"
FIELD_GAP = "gap"
"""An entry with this field is no event: events stored before it may be missing."""

VIEWERS_TTL = 30
"""Seconds the viewers key outlives its last refresh (a viewer that left and comes back
within this resumes without a gap)."""
VIEWERS_REFRESH = 5.0
"""How often a collector with open live streams refreshes the viewers key."""
CHECK_SECONDS = 1.0
"""How long a worker trusts what it last read of the viewers key."""

_json = msgspec.json.Encoder()


class Viewers:
    """A worker's view of whether anyone watches the live stream: one ``EXISTS`` per
    ``CHECK_SECONDS`` at most, and whether a gap entry is due (viewers again after
    none were seen)."""

    def __init__(self, queue_name: str, check_seconds: float = CHECK_SECONDS) -> None:
        self._key = live_viewers_key(queue_name)
        self._check_seconds = check_seconds
        self._present: bool | None = None  # None: not looked yet
        self._checked_at = float("-inf")
        self.gap_due = False

    def present(self, redis: Redis) -> bool:
        now = time.monotonic()
        if now - self._checked_at < self._check_seconds and self._present is not None:
            return self._present
        try:
            present = bool(redis.exists(self._key))
        except RedisError as exc:
            log.warning("could not read the live viewers key: %s", exc)
            present = False
        if present and self._present is False:
            self.gap_due = True
        self._present, self._checked_at = present, now
        return present


def mark_viewing(redis: Redis, queue_name: str) -> None:
    """What a collector does while it serves a live stream (synchronous form, for tests
    and tools; the collector's hub uses its asyncio client)."""
    redis.set(live_viewers_key(queue_name), b"1", ex=VIEWERS_TTL)


def publish(
    redis: Redis, queue_name: str, rows: Iterable[Mapping[str, Any]], *, gap: bool = False
) -> int:
    """Append the stored events ``rows`` (canonical records) to the live stream, after a
    gap entry if ``gap``; one pipeline. How many events were appended."""
    key = live_stream_key(queue_name)
    count = 0
    encode = _json.encode
    try:
        with redis.pipeline(transaction=False) as pipe:
            command = pipe.execute_command
            if gap:
                command("XADD", key, "MAXLEN", "~", LIVE_WINDOW, "*", FIELD_GAP, b"1")  # type: ignore[no-untyped-call]
            for row in rows:
                command(  # type: ignore[no-untyped-call]
                    "XADD",
                    key,
                    "MAXLEN",
                    "~",
                    LIVE_WINDOW,
                    "*",
                    FIELD_PRODUCT,
                    row["product_id"],
                    FIELD_TYPE,
                    row["type"],
                    FIELD_EVENT,
                    encode(row),
                )
                count += 1
            if count or gap:
                pipe.execute()
    except RedisError as exc:
        log.warning("could not publish %d stored events to the live stream: %s", count, exc)
        return 0
    return count
