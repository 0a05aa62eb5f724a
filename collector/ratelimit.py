"""Rate limits per product and per client address, in process (token buckets).

A product may cap the events per second its keys send (all clients together) and
the events per second one client address sends to it (``sightline products limits``);
both default to no limit. Each collector process keeps its own buckets: with N
collectors behind a balancer, a client may get up to N times the limit (documented;
shared limits through Redis would cost a round trip per request).

A bucket holds up to one second of its rate (the burst) and refills continuously.
The cost of a check is one dict lookup and a little arithmetic. Buckets of addresses
not seen for a minute are forgotten when the table grows past ``MAX_BUCKETS``.
"""

from __future__ import annotations

import time

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
