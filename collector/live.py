"""``GET /api/v1/live``: stored events as Server-Sent Events, from the workers' stream.

One :class:`LiveHub` per collector process reads the live stream (``XREAD BLOCK``, one
connection however many viewers) and hands each entry to every subscriber whose filter
matches, with ``put_nowait`` into the subscriber's bounded queue. A subscriber whose
queue is full (a slow or stalled client) is dropped on the spot: its response ends, and
neither the hub, nor other viewers, nor the workers ever wait for it. An EventSource
reconnects by itself with ``Last-Event-ID`` and resumes from the stream.

While at least one client is subscribed, the hub keeps the viewers key alive (set on
every subscribe, refreshed every ``VIEWERS_REFRESH`` seconds): workers publish only
while it exists (``sightline.live``). A gap entry in the stream (events stored while
nobody watched were not published) goes out as ``event: reset``.

A comment line (``: heartbeat``) goes out every ``HEARTBEAT_SECONDS`` so proxies keep
the connection open. When the server stops (SIGINT / SIGTERM), every stream ends at
once, so a viewer never holds a graceful shutdown open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import anyio
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sightline.live import (
    FIELD_EVENT,
    FIELD_GAP,
    FIELD_PRODUCT,
    FIELD_TYPE,
    VIEWERS_REFRESH,
    VIEWERS_TTL,
)

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
BUFFER = 1000
"""Entries a subscriber may fall behind before it is dropped."""
BLOCK_MS = 1000
RESUME_LIMIT = 10_000

Entry = tuple[str, dict[str, bytes]]
_GAP = FIELD_GAP.encode()


@dataclass(eq=False)
class Subscriber:
    product_id: str | None
    types: frozenset[str]
    queue: asyncio.Queue[Entry] = field(default_factory=lambda: asyncio.Queue(BUFFER))
    dropped: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, fields: dict[bytes, bytes]) -> bool:
        if _GAP in fields:
            return True  # everyone: events may be missing
        product = fields.get(FIELD_PRODUCT.encode(), b"").decode()
        kind = fields.get(FIELD_TYPE.encode(), b"").decode()
        return (self.product_id is None or product == self.product_id) and (
            not self.types or kind in self.types
        )


def _entry(raw_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    return entry_id, {k.decode(): v for k, v in fields.items()}


def stream_id(value: str) -> tuple[int, int] | None:
    """A Redis stream id ``ms-seq`` as numbers (``None`` if it is not one)."""
    ms, sep, seq = value.partition("-")
    if not (ms.isdigit() and seq.isdigit() and sep) or len(ms) > 20 or len(seq) > 20:
        return None
    return int(ms), int(seq)


class LiveHub:
    def __init__(self, connect: Callable[[], AsyncRedis], key: str, viewers_key: str) -> None:
        self._connect = connect
        self.key = key
        self.viewers_key = viewers_key
        self._viewers_marked_at = float("-inf")
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._redis: AsyncRedis | None = None
        self.closing = asyncio.Event()
        self._restore: list[tuple[int, Any]] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """End every stream when the server is asked to stop (uvicorn waits for open
        connections before the lifespan ends; a viewer must not hold it open)."""
        if threading.current_thread() is not threading.main_thread():
            return  # a server in a thread (tests) is stopped by its owner
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def chained(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.closing.set)
                previous(sig, frame)

            signal.signal(signum, chained)
            self._restore.append((signum, previous))

    async def stop(self) -> None:
        self.closing.set()
        for signum, previous in self._restore:
            with contextlib.suppress(ValueError):
                signal.signal(signum, previous)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()

    # -- subscribers -------------------------------------------------------------------

    async def subscribe(self, product_id: str | None, types: frozenset[str]) -> Subscriber:
        subscriber = Subscriber(product_id, types)
        self._subscribers.add(subscriber)
        self._redis = self._redis or self._connect()
        await self._mark_viewing()  # before the first entry: workers publish from now on
        if self._task is None or self._task.done():
            start = await self._newest_id()
            self._task = asyncio.create_task(self._read_forever(start))
        return subscriber

    async def _mark_viewing(self) -> None:
        """Keep the viewers key alive (best effort: a Redis error is retried next time)."""
        assert self._redis is not None
        try:
            await self._redis.set(self.viewers_key, b"1", ex=VIEWERS_TTL)
        except RedisError as exc:
            log.warning("live stream: cannot mark viewers in Redis: %s", exc)
            return
        self._viewers_marked_at = asyncio.get_running_loop().time()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def _newest_id(self) -> str:
        assert self._redis is not None
        try:
            newest: Any = await self._redis.xrevrange(self.key, count=1)
        except RedisError:
            return "0-0"
        return newest[0][0].decode() if newest else "0-0"

    async def _read_forever(self, last_id: str) -> None:
        assert self._redis is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._subscribers and loop.time() - self._viewers_marked_at >= VIEWERS_REFRESH:
                await self._mark_viewing()
            try:
                found: Any = await self._redis.xread({self.key: last_id}, count=500, block=BLOCK_MS)
            except RedisError as exc:
                log.warning("live stream: cannot read from Redis: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for _key, entries in found or ():
                for raw_id, fields in entries:
                    last_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    try:
                        self._deliver(_entry(raw_id, fields), fields)
                    except Exception:  # one odd entry must not stop every viewer's stream
                        log.exception("live stream: could not deliver entry %s", last_id)

    def _deliver(self, entry: Entry, fields: dict[bytes, bytes]) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.dropped or not subscriber.wants(fields):
                continue
            try:
                subscriber.queue.put_nowait(entry)
            except asyncio.QueueFull:
                subscriber.dropped = True  # too slow: cut off, never waited for
                self._subscribers.discard(subscriber)
                subscriber.wake.set()

    # -- one client's stream -----------------------------------------------------------

    async def stream(
        self, redis: AsyncRedis, subscriber: Subscriber, last_event_id: str | None
    ) -> AsyncIterator[bytes]:
        """The SSE body: the missed entries after ``last_event_id``, then live ones."""
        try:
            yield b"retry: 2000\n\n"
            sent = stream_id(last_event_id) if last_event_id else None
            if sent is not None:
                async for chunk, newest in self._backlog(redis, subscriber, last_event_id or ""):
                    yield chunk
                    sent = max(sent, newest)
            while not (subscriber.dropped or self.closing.is_set()):
                entry = await self._next(subscriber)
                if entry is None:
                    if subscriber.dropped or self.closing.is_set():
                        break
                    yield b": heartbeat\n\n"
                    continue
                number = stream_id(entry[0])
                if sent is not None and number is not None and number <= sent:
                    continue  # already sent from the backlog
                yield _message(entry)
        finally:
            self.unsubscribe(subscriber)

    async def _next(self, subscriber: Subscriber) -> Entry | None:
        """The next entry, or ``None`` after a heartbeat interval, a drop or a stop."""
        if not subscriber.queue.empty():
            return subscriber.queue.get_nowait()
        getter = asyncio.ensure_future(subscriber.queue.get())
        waiters = {getter, asyncio.ensure_future(subscriber.wake.wait())}
        closing = asyncio.ensure_future(self.closing.wait())
        waiters.add(closing)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        if getter in done and not getter.cancelled():
            return getter.result()
        return None

    async def _backlog(
        self, redis: AsyncRedis, subscriber: Subscriber, after: str
    ) -> AsyncIterator[tuple[bytes, tuple[int, int]]]:
        """What was stored after ``after`` and is still in the stream (matching the filter).

        When ``after`` is older than the stream's window, an ``event: reset`` says some
        events may be missing (the client should reload them from ``/api/v1/events``).
        """
        try:
            oldest: Any = await redis.xrange(self.key, count=1)
            if oldest:
                first = stream_id(oldest[0][0].decode())
                wanted = stream_id(after)
                if first is not None and wanted is not None and wanted < first:
                    yield b"event: reset\ndata: {}\n\n", wanted
            cursor = after
            remaining = RESUME_LIMIT
            while remaining > 0:
                entries: Any = await redis.xrange(
                    self.key, min=f"({cursor}", count=min(500, remaining)
                )
                if not entries:
                    return
                for raw_id, fields in entries:
                    entry = _entry(raw_id, fields)
                    cursor = entry[0]
                    remaining -= 1
                    number = stream_id(cursor)
                    if subscriber.wants(fields) and number is not None:
                        yield _message(entry), number
        except RedisError as exc:
            log.warning("live stream: cannot resume from %s: %s", after, exc)


class LiveResponse(StreamingResponse):
    """An SSE response cut off the moment its subscriber is dropped or the server stops,
    even while it waits on a client that does not read (the send is cancelled and the
    server closes the connection)."""

    def __init__(self, hub: LiveHub, subscriber: Subscriber, body: AsyncIterator[bytes]) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._hub = hub
        self._subscriber = subscriber

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def cut_off() -> None:
                waiters = [
                    asyncio.ensure_future(self._subscriber.wake.wait()),
                    asyncio.ensure_future(self._hub.closing.wait()),
                ]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                group.cancel_scope.cancel()

            group.start_soon(cut_off)
            try:
                await super().__call__(scope, receive, send)
            finally:
                self._hub.unsubscribe(self._subscriber)
                group.cancel_scope.cancel()


def _message(entry: Entry) -> bytes:
    entry_id, fields = entry
    if FIELD_GAP in fields:
        return b"id: " + entry_id.encode() + b"\nevent: reset\ndata: {}\n\n"
    data = fields.get(FIELD_EVENT, b"{}")
    return b"id: " + entry_id.encode() + b"\nevent: event\ndata: " + data + b"\n\n"
