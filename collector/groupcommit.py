"""Group commit: every envelope accepted while a Redis write is in flight rides the next one.

Requests call :meth:`GroupCommitter.submit` and wait; one flusher task takes
everything pending and writes it as ONE job, then wakes the waiters.

The linger adapts to load. Idle (the last flush found nobody waiting when it
finished), a request is flushed at once: a single event is acknowledged without
waiting. Busy (requests arrived while the last flush was in flight), the flusher
keeps gathering while they keep arriving: it waits in steps of a quiet ``gap`` and
stops at the first step in which nobody came, at ``linger`` (the most it may wait),
or at ``max_events``. The quiet gap follows the arrival rate: three mean
inter-arrival times of the last window (at least ``gap``, at most ``linger``), so
an open-loop stream of independent clients at a moderate rate fills jobs of about
rate x linger instead of one or two envelopes each. So jobs grow with traffic (RQ
costs per job, not per event), and a closed-loop client, whose next request cannot
come before its answer, is not held: once every client waits, nobody comes. A request
is answered 2xx only after Redis acknowledged the job that holds its envelopes;
if Redis fails or does not answer within the timeout, every waiter of that flush
gets :class:`QueueUnavailable` (503).

With a spool (``collector.spool``, ``SIGHTLINE_SPOOL``), a flush Redis did not
acknowledge is appended to the spool file and fsynced instead, and its waiters are
answered 2xx; while the spool holds records, every flush joins them there (so they reach
Redis in order, through the spool's drainer). Only a flush the spool cannot take (full,
or the disk failed) is answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript

from collector.spool import Spool
from sightline.envelope import Envelope
from sightline.errors import QueueUnavailable
from sightline.queue import Command

log = logging.getLogger(__name__)

Writer = Callable[[Sequence[Envelope]], Awaitable[object]]
FlushObserver = Callable[[int, bool], None]

WINDOW = 0.02
"""Seconds over which the arrival rate behind the quiet gap is counted."""
STALE = 0.2
"""A counting window longer than this held a quiet spell: it is not a rate."""


class GroupCommitter:
    def __init__(
        self,
        write: Writer,
        *,
        linger: float = 0.0,
        gap: float = 0.0002,
        max_events: int = 2000,
        timeout: float = 1.0,
        on_flush: FlushObserver | None = None,
        spool: Spool | None = None,
    ) -> None:
        self._write = write
        self._linger = linger
        self._gap = gap
        self._busy = False
        """Whether requests arrived while the last flush was in flight."""
        self._arrivals = 0
        """Requests submitted since ``_window_started``."""
        self._window_started = 0.0
        self._quiet = gap
        """The current quiet gap: three mean inter-arrival times (see the module)."""
        self._max_events = max_events
        self._timeout = timeout
        self._on_flush = on_flush
        self._spool = spool
        self._pending: list[Envelope] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The running loop, from :meth:`start` (``None``: the one running a submission)."""
        self._closing = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._flush_forever(), name="group-commit")

    async def stop(self) -> None:
        """Flush what is pending, then stop. Waiters still get their answer."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, envelopes: Sequence[Envelope]) -> None:
        await self.submission(envelopes)

    def submission(self, envelopes: Sequence[Envelope]) -> asyncio.Future[None]:
        """:meth:`submit` as the future to await (one coroutine frame fewer for a request to
        suspend and resume through): ``envelopes`` are pending when it returns."""
        if self._closing:
            raise QueueUnavailable("the collector is shutting down")
        # The loop's own future, made directly (``create_future`` is a call more, ~0.2 µs).
        waiter: asyncio.Future[None] = asyncio.Future(loop=self._loop)
        self._pending.extend(envelopes)
        self._waiters.append(waiter)
        self._arrivals += 1
        self._wakeup.set()
        # Always resolved by the flusher: every write is bounded by ``timeout``.
        return waiter

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._busy and self._linger and not self._closing:
                await self._gather()
            self._wakeup.clear()
            if self._waiters:
                envelopes, waiters = self._pending, self._waiters
                self._pending, self._waiters = [], []
                await self._flush(envelopes, waiters)
                self._busy = bool(self._waiters)
            if self._closing and not self._waiters:
                return

    async def _gather(self) -> None:
        """Wait for more while requests keep arriving: until a quiet gap, ``linger``
        or ``max_events``, whichever comes first."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self._linger
        quiet = self._quiet_gap(now)
        while len(self._pending) < self._max_events and not self._closing:
            seen = len(self._pending)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(quiet, remaining))
            if len(self._pending) == seen:
                return

    def _quiet_gap(self, now: float) -> float:
        """Three mean inter-arrival times, counted over windows of at least ``WINDOW``
        seconds; a window longer than ``STALE`` held a quiet spell and starts again
        from the minimum gap."""
        elapsed = now - self._window_started
        if elapsed > STALE:
            self._quiet = self._gap
        elif elapsed >= WINDOW:
            interval = elapsed / max(self._arrivals, 1)
            self._quiet = min(max(self._gap, 3 * interval), self._linger)
        else:
            return self._quiet
        self._arrivals, self._window_started = 0, now
        return self._quiet

    async def _flush(self, envelopes: list[Envelope], waiters: list[asyncio.Future[None]]) -> None:
        spool = self._spool
        if spool is not None and spool.active:  # records wait for Redis: join them, in order
            await self._spill(spool, envelopes, waiters)
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._write(envelopes)
        except Exception as exc:  # any Redis failure or timeout: spooled, else 503
            log.warning("group commit of %d envelopes failed: %r", len(envelopes), exc)
            if spool is not None:
                await self._spill(spool, envelopes, waiters)
            else:
                self._fail(envelopes, waiters, exc)
            return
        self._acknowledge(envelopes, waiters)

    async def _spill(
        self, spool: Spool, envelopes: list[Envelope], waiters: list[asyncio.Future[None]]
    ) -> None:
        try:
            await spool.append(envelopes)  # fsynced when it returns
        except Exception as exc:  # full, or the disk failed: 503 as without a spool
            log.warning("spooling %d envelopes failed: %r", len(envelopes), exc)
            self._fail(envelopes, waiters, exc)
            return
        self._acknowledge(envelopes, waiters, job=False)  # the spool counts its own

    def _acknowledge(
        self, envelopes: list[Envelope], waiters: list[asyncio.Future[None]], *, job: bool = True
    ) -> None:
        if job and self._on_flush is not None:
            self._on_flush(len(envelopes), True)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _fail(
        self, envelopes: list[Envelope], waiters: list[asyncio.Future[None]], exc: Exception
    ) -> None:
        if self._on_flush is not None:
            self._on_flush(len(envelopes), False)
        error = QueueUnavailable(f"Redis did not acknowledge: {exc!r}")
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)


ENQUEUE_SCRIPT = """
local commands = cmsgpack.unpack(ARGV[1])
local failed
for _, command in ipairs(commands) do
  for j = 1, #command do
    if type(command[j]) == 'number' then command[j] = ARGV[command[j]] end
  end
  local reply = redis.pcall(unpack(command))
  if type(reply) == 'table' and reply.err and not failed then failed = reply end
end
if failed then return failed end
return #commands
"""
"""Runs the commands it is given as MULTI/EXEC would: all of them, atomically, every one
even after one fails; answers the first failure, if any. The commands are ``ARGV[1]``, a
MessagePack array of arrays of arguments, each a string or the index of the ``ARGV``
that holds it (see :func:`write_async`)."""

_scripts: weakref.WeakKeyDictionary[AsyncRedis, AsyncScript] = weakref.WeakKeyDictionary()
_msgpack = msgspec.msgpack.Encoder()


async def write_async(redis: AsyncRedis, commands: list[Command]) -> None:
    """``commands`` (``JobBuilder.commands``: RQ's enqueue and our counter) in one
    atomic step, as one Redis command: a Lua script (made once per client; redis-py loads
    it again if the server lost it).

    It was a MULTI/EXEC pipeline, which costs a reply, a read and a timeout per command
    (seven, ~45 µs of a flush's CPU more). The commands go as one MessagePack array
    (Redis's Lua has ``cmsgpack``): redis-py packs each argument of a command in Python,
    and a job's ~55 cost ~29 µs a flush, against ~8 µs this way. Arguments that are not a
    ``str`` (the job's compressed data; numbers) go as arguments of their own, as
    redis-py's encoder makes them (a number's text: Lua's numbers are doubles; a ``str``
    subclass's value), referred to by their index: ``cmsgpack`` predates MessagePack's
    bytes type.
    """
    script = _scripts.get(redis)
    if script is None:
        script = _scripts[redis] = redis.register_script(ENQUEUE_SCRIPT)
    encode = redis.connection_pool.get_encoder().encode  # type: ignore[no-untyped-call]
    argv: list[Any] = [b""]
    arrays = []
    for args, _ in commands:  # the options only tell redis-py how to parse a reply
        array: list[str | int] = []
        for arg in args:
            if type(arg) is str:
                array.append(arg)
            else:
                argv.append(arg if type(arg) is bytes else encode(arg))
                array.append(len(argv))  # (Lua counts from 1)
        arrays.append(array)
    argv[0] = _msgpack.encode(arrays)
    await script(args=argv)
