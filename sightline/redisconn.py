"""Redis connections built from settings (the connection is always passed in, never global)."""

from __future__ import annotations

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from sightline.settings import Settings


def redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    return f"unix://{settings.embedded_redis_socket}"


def connect(settings: Settings, *, timeout: float | None) -> Redis:
    """A client; ``timeout`` bounds every command (``None`` for RQ workers, whose
    blocking dequeue outlasts any short timeout)."""
    return Redis.from_url(
        redis_url(settings),
        socket_timeout=timeout,
        socket_connect_timeout=timeout if timeout is not None else 5.0,
        health_check_interval=30,
    )


def connect_async(settings: Settings, *, timeout: float | None) -> AsyncRedis:
    """A client on the event loop; ``timeout`` bounds every command, or ``None``: the
    callers bound each call themselves (the group commit's writes, ``asyncio.timeout``),
    and no reply pays a timer of its own (connecting is still bounded)."""
    return AsyncRedis.from_url(
        redis_url(settings),
        socket_timeout=timeout,
        socket_connect_timeout=timeout if timeout is not None else settings.redis_timeout,
        health_check_interval=30,
    )
