"""Operational endpoints: health."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse


async def health(request: Request) -> JSONResponse:
    """200 when this collector can reach Redis (so it can accept events), else 503."""
    redis: Redis = request.state.redis
    try:
        await asyncio.wait_for(redis.ping(), timeout=2.0)
    except (RedisError, OSError, TimeoutError) as exc:
        return JSONResponse(
            {"status": "unavailable", "redis": f"unreachable: {exc}"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"status": "ok", "redis": "ok"})
