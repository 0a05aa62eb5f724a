"""One batch of envelopes as ONE RQ job: the queue's name, the job and how it is built.

RQ is synchronous. Running its ``enqueue`` in a thread costs more than the write
itself: the thread and the event loop hand the GIL back and forth at every
socket call (measured: ~12 ms per flush under load, 5,300 req/s). So RQ builds
the job exactly as it always does, on a pipeline that is never executed (the first
jobs; then a template of its commands that RQ's own jobs were checked to match:
:class:`JobBuilder`), and the queued commands are sent by ``redis.asyncio`` in one
atomic round trip (a Lua script that runs them as MULTI/EXEC would:
``collector.groupcommit.write_async``), with our own counter in the same step.

RQ stores a job's data zlib-compressed at zlib's default level (6), and compresses it
again each time it saves the job (a worker saves every job it finishes). ``Job`` here
compresses at level 1 (a quarter of the CPU for a 64-envelope job, about 30 % larger)
and a job read from Redis saves the bytes it was read with: compressed once, by the
collector, off the worker's path. RQ reads either, and uncompressed data too.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import msgspec
from redis import Redis
from rq import Queue, Retry
from rq.job import Job as RQJob
from rq.utils import now, utcformat

from sightline.envelope import Envelope
from sightline.redis_keys import Counter, counter_key
from sightline.serializer import JSONSerializer

log = logging.getLogger(__name__)

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
    """The Redis commands that enqueue ``process_batch(envelopes)``, as RQ builds them.

    RQ builds the first jobs itself. Its commands for a job differ from one job to the
    next only in the job's id (and key), its data, its description and its two times, so
    after the first call a :class:`_Template` of them (learnt from a job RQ built, and
    checked to reproduce exactly a second job RQ built from other envelopes) gives the
    commands of the next: RQ's ~45 Python calls per job (~20 µs a flush alone, twice that
    on the collector's loop, where the flush's code runs cold between requests) become a
    copy of five tuples. Should RQ's format ever vary otherwise (another RQ version),
    the check fails and RQ builds every job, as before."""

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
        self._template: _Template | None = None
        self._learnt = False

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
        if not self._learnt:
            self._learnt = True
            self._template = self._learn()
        template = self._template
        if template is None:
            commands = self._rq_commands(envelopes)[0]
        else:
            job_id = str(uuid.uuid4())  # as RQ makes a job's id
            moment = utcformat(now())
            commands = template.fill(self._holes(envelopes, job_id, moment, moment))
        commands.append((("INCRBY", self.accepted_key, len(envelopes)), {}))
        return commands

    def _rq_commands(
        self, envelopes: Sequence[Envelope | dict[str, Any] | msgspec.Raw]
    ) -> tuple[list[Command], RQJob]:
        """RQ's commands enqueueing the job of ``envelopes``, and the job."""
        pipe = self._queue.connection.pipeline(transaction=True)
        try:
            job = self._queue.enqueue_call(
                JOB_FUNCTION,
                args=(list(envelopes),),
                # RQ's default is a repr of the arguments (every envelope), cut short:
                # costly on the hot path and no more informative in `rq info`.
                description=_description(envelopes),
                timeout=self._job_timeout,
                result_ttl=0,  # results are in the store; keep Redis small
                failure_ttl=30 * 24 * 3600,
                retry=self._retry,
                pipeline=pipe,
            )
            return [(c[0], c[1]) for c in pipe.command_stack], job
        finally:
            pipe.reset()

    def _holes(
        self,
        envelopes: Sequence[Envelope | dict[str, Any] | msgspec.Raw],
        job_id: str,
        created_at: str,
        enqueued_at: str,
    ) -> dict[str, Any]:
        """What fills a :class:`_Template`'s holes for the job ``job_id`` of ``envelopes``
        (its data as :meth:`Job.to_dict` stores it: RQ's job tuple, compressed)."""
        data = JSONSerializer.dumps((JOB_FUNCTION, None, (list(envelopes),), {}))
        return {
            "id": job_id,
            "key": self._queue.job_class.redis_job_namespace_prefix + job_id,
            "data": zlib.compress(data, COMPRESSION_LEVEL),
            "description": _description(envelopes),
            "created_at": created_at,
            "enqueued_at": enqueued_at,
        }

    def _learn(self) -> _Template | None:
        """The template of RQ's commands, if it reproduces what RQ builds (see the class)."""
        samples: tuple[list[dict[str, Any]], ...] = ([], [{"sample": "one"}, {"sample": "two"}])
        built = [self._rq_commands(envelopes) for envelopes in samples]
        holes = [
            self._holes(envelopes, job.id, utcformat(job.created_at), utcformat(job.enqueued_at))
            for envelopes, (_, job) in zip(samples, built, strict=True)
            if job.created_at is not None and job.enqueued_at is not None
        ]
        if len(holes) == len(built):
            template = _Template.of(built[0][0], holes[0])
            if template is not None and template.fill(holes[1]) == built[1][0]:
                return template
        log.warning("RQ's job commands are not what the template expects: RQ builds each job")
        return None


def _description(envelopes: Sequence[object]) -> str:
    return f"process_batch({len(envelopes)} envelopes)"


class _Template:
    """A job's commands with holes where each job's own values go (:class:`JobBuilder`):
    (command index, argument index, hole name) for each."""

    def __init__(self, commands: list[Command], holes: list[tuple[int, int, str]]) -> None:
        self._commands = commands
        self._holes = holes

    @classmethod
    def of(cls, commands: list[Command], values: dict[str, Any]) -> _Template | None:
        """The template of ``commands``, built for a job of these hole ``values``: each
        argument equal to one of them is that hole (a time by the field it follows, as the
        two times may be equal); ``None`` if a value is found nowhere."""
        holes: list[tuple[int, int, str]] = []
        times = {"created_at", "enqueued_at"}
        for i, (args, _) in enumerate(commands):
            for j, arg in enumerate(args):
                field = args[j - 1] if j else None
                if isinstance(field, str) and field in times and arg == values[field]:
                    holes.append((i, j, field))
                    continue
                for name, value in values.items():
                    if name not in times and type(arg) is type(value) and arg == value:
                        holes.append((i, j, name))
                        break
        if {name for _, _, name in holes} != set(values):
            return None
        return cls(commands, holes)

    def fill(self, values: dict[str, Any]) -> list[Command]:
        commands = [(list(args), options) for args, options in self._commands]
        for i, j, name in self._holes:
            commands[i][0][j] = values[name]
        return [(tuple(args), options) for args, options in commands]
