"""The day's salt for cookieless visitor ids (``sightline.cookieless``), shared through Redis.

One random salt per UTC day, created by whichever collector needs it first (``SET NX``,
so every collector of a deployment hashes with the same one) and expiring two days
later, as Plausible keeps its salts: after that, the visitor ids of that day can no
longer be recomputed from a guessed address and user agent, by anyone. Neither the
address nor the agent is ever written anywhere by this module; each collector keeps
the day's salt in memory and asks Redis once a day.

Why not a salt derived from a secret seed and the date: such a salt exists forever
(whoever has the seed can recompute any day's ids), which is what rotating salts
exist to prevent. The cost of the random salt is one Redis round trip per collector
per day; if Redis does not answer, the request gets the usual 503 (``Retry-After``).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, date, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request

from sightline.cookieless import SALT_BYTES
from sightline.errors import QueueUnavailable
from sightline.redis_keys import cookieless_salt_key

KEEP_SECONDS = 2 * 24 * 3600
"""A salt outlives its day by one more: a visit across midnight is hashed with both."""


class DailySalts:
    """The salt of each UTC day, from Redis, remembered for the day by this process."""

    def __init__(self, redis: Redis, timeout: float) -> None:
        self.redis = redis
        self.timeout = timeout
        self.known: dict[date, bytes] = {}

    async def today(self, now: datetime | None = None) -> bytes:
        day = (now or datetime.now(UTC)).astimezone(UTC).date()
        salt = self.known.get(day)
        if salt is None:
            try:
                salt = await asyncio.wait_for(self._fetch(day), self.timeout)
            except (RedisError, OSError, TimeoutError):
                raise QueueUnavailable() from None
            self.known = {day: salt}  # yesterday's is never needed again here
        return salt

    async def _fetch(self, day: date) -> bytes:
        key = cookieless_salt_key(day)
        await self.redis.set(key, secrets.token_bytes(SALT_BYTES), nx=True, ex=KEEP_SECONDS)
        salt = await self.redis.get(key)
        if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
            raise RedisError(f"{key} does not hold a salt")
        return salt


def daily_salts(request: Request) -> DailySalts:
    """The app's :class:`DailySalts` (made on first use, on the app's Redis client)."""
    state = request.app.state
    salts: DailySalts | None = getattr(state, "cookieless_salts", None)
    if salts is None:
        settings = request.state.settings
        salts = state.cookieless_salts = DailySalts(request.state.redis, settings.redis_timeout)
    return salts
