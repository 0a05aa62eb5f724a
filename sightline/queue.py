"""One batch of envelopes as ONE RQ job: the queue's name, the job and how it is built.

RQ is synchronous. Running its ``enqueue`` in a thread costs more than the write
itself: the thread and the event loop hand the GIL back and forth at every
socket call (measured: ~12 ms per flush under load, 5,300 req/s). So RQ builds
the job exactly as it always does, on a pipeline that is never executed, and its
queued commands are sent by ``redis.asyncio`` in one atomic round trip (a Lua script
that runs them as MULTI/EXEC would: ``collector.groupcommit.write_async``), with our
own counter in the same step.

RQ stores a job's data zlib-compressed at zlib's default level (6), and compresses it
again each time it saves the job (a worker saves every job it finishes). ``Job`` here
compresses at level 1 (a quarter of the CPU for a 64-envelope job, about 30 % larger)
and a job read from Redis saves the bytes it was read with: compressed once, by the
collector, off the worker's path. RQ reads either, and uncompressed data too.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import msgspec
from redis import Redis
from rq import Queue, Retry
from rq.job import Job as RQJob

from sightline.envelope import Envelope
from sightline.redis_keys import Counter, counter_key
from sightline.serializer import JSONSerializer

JOB_FUNCTION = "worker.jobs.process_batch"
# Backoff for infrastructure failures (database down): about 20 minutes in all.
RETRY_INTERVALS = (1, 2, 5, 10, 30, 60, 120, 300, 600)

Command = tuple[tuple[Any, ...], dict[str, Any]]


COMPRESSION_LEVEL = 1


class Job(RQJob):
    """RQ's job, its data compressed once and fast (see the module)."""

    _packed: tuple[bytes, bytes] | None = None
    """(data, the bytes stored for it): what was read from Redis, or last written."""

    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None):
        # RQ resolves the serializer of every job it builds or fetches: an isinstance
        # check against a runtime Protocol, ~10 µs on Python 3.11. Ours needs none.
        ours = serializer is JSONSerializer
        super().__init__(id, connection, None if ours else serializer)
        if ours:
            self.serializer = JSONSerializer

    def restore(self, raw_data: dict[bytes, bytes]) -> None:
        super().restore(raw_data)
        stored = raw_data.get(b"data")
        if stored is not None and isinstance(self._data, bytes):
            self._packed = (self._data, stored)

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        data = self.data
        packed = self._packed
        if packed is None or packed[0] is not data:
            packed = self._packed = (data, zlib.compress(data, COMPRESSION_LEVEL))
        self._data = b""  # RQ's own compression, of nothing
        try:
            obj = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        obj["data"] = packed[1]
        return obj


def make_queue(connection: Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer, job_class=Job)


class JobBuilder:
    """The Redis commands that enqueue ``process_batch(envelopes)``, built by RQ itself."""

    def __init__(self, queue: Queue, *, max_retries: int, job_timeout: int) -> None:
        self._queue = queue
        # RQ refuses Retry(max=0): no retries is no Retry at all.
        self._retry = (
            Retry(max=max_retries, interval=list(RETRY_INTERVALS[:max_retries]))
            if max_retries > 0
            else None
        )
        self._job_timeout = job_timeout
        self.accepted_key = counter_key(queue.name, Counter.ACCEPTED)

    def prepare(self) -> None:
        """RQ asks the server for its version once per queue: do it before serving."""
        self._queue.get_redis_server_version()

    @property
    def prepared(self) -> bool:
        """Whether RQ knows the server's version (else building a job would ask, blocking)."""
        return bool(self._queue.redis_server_version)

    def commands(
        self, envelopes: Sequence[Envelope | dict[str, Any] | msgspec.Raw]
    ) -> list[Command]:
        """``envelopes``: as accepted, as decoded JSON (replay) or as encoded JSON (the spool)."""
        pipe = self._queue.connection.pipeline(transaction=True)
        try:
            self._queue.enqueue_call(
                JOB_FUNCTION,
                args=(list(envelopes),),
                # RQ's default is a repr of the arguments (every envelope), cut short:
                # costly on the hot path and no more informative in `rq info`.
                description=f"process_batch({len(envelopes)} envelopes)",
                timeout=self._job_timeout,
                result_ttl=0,  # results are in the store; keep Redis small
                failure_ttl=30 * 24 * 3600,
                retry=self._retry,
                pipeline=pipe,
            )
            commands: list[Command] = [(c[0], c[1]) for c in pipe.command_stack]
        finally:
            pipe.reset()
        commands.append((("INCRBY", self.accepted_key, len(envelopes)), {}))
        return commands
