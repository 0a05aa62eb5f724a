"""The collector application: ``create_app(settings)``; clients live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from collector.cors import ProductCORSMiddleware
from collector.debug import DebugAnswer, debug_answer
from collector.directory import KeyTable, ProductDirectory
from collector.groupcommit import GroupCommitter, write_async
from collector.hotpath import CollectorApp, ErrorHandler, HotPaths
from collector.live import BLOCK_MS, LiveHub
from collector.metrics import Metrics, RequestMetricsMiddleware
from collector.privacy import EdgeLocator
from collector.ratelimit import SharedLimits, TokenBuckets
from collector.routes import ENDPOINTS, routes
from collector.snippet import assets_state
from collector.spool import Spool
from sightline.envelope import Envelope
from sightline.errors import ClientError, ErrorStyle, QueueUnavailable, TooManyRequests
from sightline.gctuning import TunedGC
from sightline.queue import JobBuilder, make_queue
from sightline.redis_keys import live_stream_key, live_viewers_key
from sightline.redisconn import connect, connect_async
from sightline.settings import Settings
from sightline.store.db import make_engine, read_connection
from sightline.store.migrate import require_current
from sightline.store.products import list_products

_json = msgspec.json.Encoder()
SERVING_GC = TunedGC(young=10_000)
"""While an app serves: its process's startup heap out of the cyclic GC's sight, the young
generation collected every 10,000 net allocations (``sightline.gctuning``: full collections
walking the startup heap were ~8 µs of the ~39 per request of bench/collector_cpu.py)."""


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(settings.sqlalchemy_url)
        require_current(engine)  # only `sightline migrate` / `up` migrate
        redis = connect(settings, timeout=settings.redis_timeout)
        async_redis = connect_async(settings, timeout=settings.redis_timeout)
        # The group commit's and the spool's writes, each bounded by their caller's timeout.
        commit_redis = connect_async(settings, timeout=None)
        builder = JobBuilder(
            make_queue(redis, settings.queue_name),
            max_retries=settings.max_retries,
            job_timeout=settings.job_timeout,
        )
        with contextlib.suppress(RedisError, OSError):  # Redis may come later: /health says so
            await asyncio.to_thread(builder.prepare)

        async def write(envelopes: Sequence[Envelope]) -> None:
            if not builder.prepared:  # Redis was away at start: ask, off the event loop
                await asyncio.to_thread(builder.prepare)
            await write_async(commit_redis, builder.commands(envelopes))

        def load_keys() -> KeyTable:
            with read_connection(engine) as conn:
                return KeyTable.from_products(list_products(conn))

        def on_flush(size: int, acknowledged: bool) -> None:
            if acknowledged:
                metrics.flush_size.observe(size)
            else:
                metrics.flush_failures.inc()

        directory = ProductDirectory(load_keys, settings.key_refresh_seconds)
        # Flushes Redis did not acknowledge, kept on local disk until it answers again.
        spool = (
            None
            if settings.spool_dir is None
            else Spool(
                settings.spool_dir,
                max_bytes=settings.spool_max_bytes,
                max_events=settings.flush_max_events,
                timeout=settings.redis_timeout,
                metrics=metrics,
            )
        )

        async def write_raw(envelopes: Sequence[msgspec.Raw]) -> None:
            if not builder.prepared:
                await asyncio.to_thread(builder.prepare)
            await write_async(commit_redis, builder.commands(envelopes))

        committer = GroupCommitter(
            write,
            linger=settings.flush_linger_ms / 1000,
            max_events=settings.flush_max_events,
            timeout=settings.redis_timeout,
            on_flush=on_flush,
            spool=spool,
        )
        # /api/v1/live: one blocking XREAD per process, on a connection of its own.
        live = LiveHub(
            lambda: connect_async(settings, timeout=BLOCK_MS / 1000 + settings.redis_timeout),
            live_stream_key(settings.queue_name),
            live_viewers_key(settings.queue_name),
        )
        # GeoIP for products that do not keep full addresses (``collector.privacy``).
        edge_locator = await asyncio.to_thread(EdgeLocator.from_settings, settings)
        await directory.start()
        if spool is not None:
            await spool.start(write_raw)
        await committer.start()
        live.start()
        SERVING_GC.enter()
        try:
            yield {
                "settings": settings,
                "directory": directory,
                "committer": committer,
                "metrics": metrics,
                "rate_limits": TokenBuckets(),
                "shared_limits": (
                    SharedLimits(async_redis, settings.redis_timeout)
                    if settings.shared_rate_limits
                    else None
                ),
                "edge_locator": edge_locator,
                "redis": async_redis,
                **assets_state(),
                # Read APIs (Fuzy /v3/*, Pyze profiles, DAS search) query the store through
                # it, in a thread; the ingest path never does.
                "engine": engine,
                "jobs": builder,  # dead-letter replay enqueues through it (/api/v1)
                "live": live,
                "spool": spool,
            }
        finally:
            SERVING_GC.exit()
            await live.stop()
            await committer.stop()
            if spool is not None:
                await spool.stop()
            await directory.stop()
            edge_locator.close()
            redis.close()
            await async_redis.aclose()
            await commit_redis.aclose()
            engine.dispose()

    handlers: dict[type[Exception], ErrorHandler] = {
        ClientError: client_error,
        DebugAnswer: debug_answer,
        QueueUnavailable: queue_unavailable,
        HTTPException: http_error,
    }
    return CollectorApp(
        hot=HotPaths(ENDPOINTS, handlers, metrics),
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestMetricsMiddleware, metrics=metrics),
            Middleware(ProductCORSMiddleware),
        ],
        exception_handlers=handlers,
    )


def error_body(exc: ClientError) -> bytes:
    errors = [{"field": e.field, "reason": e.reason} for e in exc.errors]
    if exc.style is ErrorStyle.DAS:
        return _json.encode(
            {
                "detail": [
                    {"loc": e["field"].split("."), "msg": e["reason"], "type": "value_error"}
                    for e in errors
                ]
                or [{"loc": [], "msg": exc.message, "type": "value_error"}]
            }
        )
    return _json.encode(
        {
            "success": False,
            "code": error_code(exc.status),
            "message": exc.message,
            "error": exc.message,
            "errors": errors,
        }
    )


ERROR_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "queue_unavailable",
}


def error_code(status: int) -> str:
    """The ``code`` of an error body: what Segment-style SDKs read (with ``message``)."""
    return ERROR_CODES.get(status, "client_error" if status < 500 else "server_error")


def _plain_error(status: int, message: str) -> bytes:
    return _json.encode(
        {"success": False, "code": error_code(status), "message": message, "error": message}
    )


async def client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return Response(
        error_body(exc), status_code=exc.status, headers=headers, media_type="application/json"
    )


async def queue_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QueueUnavailable)
    return Response(
        _plain_error(503, "the event queue is unavailable, retry later"),
        status_code=503,
        headers={"Retry-After": str(exc.retry_after)},
        media_type="application/json",
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return Response(
        _plain_error(exc.status_code, exc.detail),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )
