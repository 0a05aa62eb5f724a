"""Operational endpoints: health."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from collector.spool import Spool
from sightline.redis_keys import worker_alive_key, workers_key
from sightline.settings import Settings


async def live_workers(redis: Redis, queue_name: str) -> int:
    """Sightline workers of the queue whose liveness key is set (see ``worker.recovery``)."""
    names = await redis.smembers(workers_key(queue_name))
    if not names:
        return 0
    keys = [worker_alive_key(queue_name, n.decode() if isinstance(n, bytes) else n) for n in names]
    return int(await redis.exists(*keys))


async def health(request: Request) -> JSONResponse:
    """200 when this collector accepts events (it reaches Redis, or its spool has room),
    else 503.

    ``status`` is ``degraded`` (still 200: events are accepted and wait in Redis) while no
    worker of the queue is alive, so nothing is being stored, and while Redis is away or
    spooled events wait to be sent to it (``spool``: its bytes and bound).
    """
    redis: Redis = request.state.redis
    settings: Settings = request.state.settings
    spool: Spool | None = request.state.spool
    state = (
        {}
        if spool is None
        else {"spool": {"bytes": spool.pending_bytes, "max_bytes": spool.max_bytes}}
    )
    try:
        await asyncio.wait_for(redis.ping(), timeout=2.0)
        workers = await asyncio.wait_for(live_workers(redis, settings.queue_name), timeout=2.0)
    except (RedisError, OSError, TimeoutError) as exc:
        if spool is not None and spool.has_room:
            return JSONResponse(
                {"status": "degraded", "redis": f"unreachable: {exc}", "workers": 0, **state}
            )
        return JSONResponse(
            {"status": "unavailable", "redis": f"unreachable: {exc}", "workers": 0, **state},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    status = "ok" if workers and not (spool and spool.pending_bytes) else "degraded"
    return JSONResponse({"status": status, "redis": "ok", "workers": workers, **state})
