"""The live stream of stored events: what workers publish and collectors serve as SSE.

After a batch's transaction commits, the worker appends each newly stored event to a
capped Redis stream per queue (``XADD sightline:<queue>:live MAXLEN ~ LIVE_WINDOW``)
with its product, its type and its canonical record as JSON. Collectors read the
stream (``/api/v1/live``); a stream id is the SSE ``id``, so a client that reconnects
with ``Last-Event-ID`` gets exactly what it missed (``XRANGE`` after that id) as long
as it is still among the newest ``LIVE_WINDOW`` entries.

Publishing is best effort and never fails the job: the events are stored; a Redis
error here only means a live viewer misses them (they are in the store).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from redis import Redis
from redis.exceptions import RedisError

from sightline.redis_keys import live_stream_key

log = logging.getLogger(__name__)

LIVE_WINDOW = 10_000
"""About how many of the newest stored events a reconnecting client can resume from."""
FIELD_PRODUCT = "p"
FIELD_TYPE = "t"
FIELD_EVENT = "e"

_json = msgspec.json.Encoder()


def publish(redis: Redis, queue_name: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append the stored events ``rows`` (canonical records) to the live stream."""
    key = live_stream_key(queue_name)
    count = 0
    try:
        with redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.xadd(
                    key,
                    {
                        FIELD_PRODUCT: row["product_id"],
                        FIELD_TYPE: row["type"],
                        FIELD_EVENT: _json.encode(row),
                    },
                    maxlen=LIVE_WINDOW,
                    approximate=True,
                )
                count += 1
            if count:
                pipe.execute()
    except RedisError as exc:
        log.warning("could not publish %d stored events to the live stream: %s", count, exc)
        return 0
    return count
