"""Rate limits per product and per client address: in process (token buckets), or
shared through Redis.

A product may cap the events per second its keys send (all clients together) and
the events per second one client address sends to it (``sightline products limits``);
both default to no limit. By default each collector process keeps its own buckets:
with N collectors behind a balancer, a client may get up to N times the limit. With
``SIGHTLINE_SHARED_RATE_LIMITS`` on, :class:`SharedLimits` counts them in Redis for
every collector together: one script call (one round trip) per request of a product
that has limits, nothing for the others.

A bucket holds up to one second of its rate (the burst) and refills continuously.
The cost of a check is one dict lookup and a little arithmetic. Buckets of addresses
not seen for a minute are forgotten when the table grows past ``MAX_BUCKETS``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from sightline.redis_keys import rate_limit_key

log = logging.getLogger(__name__)

MAX_BUCKETS = 100_000
IDLE_SECONDS = 60.0


class TokenBuckets:
    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, key: tuple[str, str], rate: float, cost: int) -> float:
        """Take ``cost`` tokens from ``key``'s bucket (``rate`` per second, burst of one
        second's worth); 0 when taken, else the seconds until they would be."""
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (rate, now))
        tokens = min(rate, tokens + (now - then) * rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return (cost - tokens) / rate if cost <= rate else 1.0
        if len(self._buckets) > MAX_BUCKETS:
            self._forget(now)
        self._buckets[key] = (tokens - cost, now)
        return 0.0

    def _forget(self, now: float) -> None:
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < IDLE_SECONDS}


# Every limit is checked before any is counted (a request refused by one limit uses
# none of the others); a counter lives for the one-second window its first event
# opened. Returns {0, 0} when counted, else {the refusing limit's index, ms left}.
_SCRIPT = """
local cost = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used + cost > tonumber(ARGV[i + 1]) then
    local left = redis.call('PTTL', key)
    if left < 0 then left = 1000 end
    return {i, left}
  end
end
for i, key in ipairs(KEYS) do
  if redis.call('INCRBY', key, cost) == cost then
    redis.call('PEXPIRE', key, 1000)
  end
end
return {0, 0}
"""


class SharedLimits:
    """The products' limits counted in Redis (fixed one-second windows per limit).

    A window admits up to the limit's events per second, the in-process buckets' burst.
    If Redis does not answer within ``timeout`` the request is let through: the group
    commit that follows answers 503 in that case anyway.
    """

    def __init__(self, redis: AsyncRedis, timeout: float) -> None:
        self._script = redis.register_script(_SCRIPT)
        self._timeout = timeout

    async def take(
        self, product_id: str, limits: list[tuple[str, str, float]], cost: int
    ) -> tuple[int, float]:
        """``limits``: (scope, who, events per second) each. Returns (0, 0) when the
        request's ``cost`` events are counted, else (1 + the index of the limit that
        refused, the seconds until its window ends)."""
        keys = [rate_limit_key(product_id, scope, who) for scope, who, _ in limits]
        try:
            refused, left_ms = await asyncio.wait_for(
                self._script(keys=keys, args=[cost, *(rate for _, _, rate in limits)]),
                timeout=self._timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("shared rate limits unavailable, request let through: %r", exc)
            return 0, 0.0
        return int(refused), int(left_ms) / 1000
