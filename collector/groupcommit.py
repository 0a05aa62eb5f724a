"""Group commit: every envelope accepted while a Redis write is in flight rides the next one.

Requests call :meth:`GroupCommitter.submit` and wait; one flusher task takes
everything pending, writes it as ONE job (in a worker thread, since RQ is
synchronous), then wakes the waiters. A request is answered 2xx only after Redis
acknowledged the job that holds its envelopes; if Redis fails or is too slow,
every waiter of that flush gets :class:`QueueUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from collector.envelope import Envelope
from collector.errors import QueueUnavailable

log = logging.getLogger(__name__)

Writer = Callable[[Sequence[Envelope]], object]
FlushObserver = Callable[[int], None]


class GroupCommitter:
    def __init__(
        self,
        write: Writer,
        *,
        linger: float = 0.0,
        max_events: int = 2000,
        timeout: float = 1.0,
        on_flush: FlushObserver | None = None,
    ) -> None:
        self._write = write
        self._linger = linger
        self._max_events = max_events
        self._timeout = timeout
        self._on_flush = on_flush
        self._pending: list[Envelope] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="group-commit")

    async def stop(self) -> None:
        """Flush what is pending, then stop. Waiters still get their answer."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, envelopes: Sequence[Envelope]) -> None:
        if self._closing:
            raise QueueUnavailable("the collector is shutting down")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.extend(envelopes)
        self._waiters.append(waiter)
        self._wakeup.set()
        try:
            # The flush itself is bounded by the Redis socket timeout; this is the backstop
            # so a request never hangs. An envelope that lands after a 503 is harmless:
            # the client retries with the same messageId and the worker deduplicates.
            await asyncio.wait_for(asyncio.shield(waiter), timeout=self._timeout * 2 + 0.5)
        except TimeoutError:
            raise QueueUnavailable("timed out waiting for Redis") from None

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self._linger and not self._closing and len(self._pending) < self._max_events:
                await asyncio.sleep(self._linger)
            self._wakeup.clear()
            if not self._waiters:
                if self._closing:
                    return
                continue
            envelopes, waiters = self._pending, self._waiters
            self._pending, self._waiters = [], []
            try:
                await loop.run_in_executor(self._executor, self._write, envelopes)
            except Exception as exc:  # any Redis failure: every waiter of this flush gets 503
                log.warning("group commit of %d envelopes failed: %s", len(envelopes), exc)
                error = QueueUnavailable(str(exc))
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
            else:
                if self._on_flush is not None:
                    self._on_flush(len(envelopes))
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            if self._closing and not self._waiters:
                return
