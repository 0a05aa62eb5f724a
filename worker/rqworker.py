"""The RQ worker class: several queued batches in ONE transaction, RQ's bookkeeping pipelined.

The collector writes one job per group-commit flush. Under moderate load a flush holds a
handful of events, and RQ's per-job bookkeeping (about twenty Redis round trips: the
execution record, the job's status, its deletion, the worker's heartbeat and state) plus
one database transaction per job cost far more than the events themselves. So when the
queue has a backlog, :class:`SightlineWorker` takes up to ``SIGHTLINE_WORKER_MAX_EVENTS``
envelopes' worth of jobs and

1. claims them as RQ does (``LMOVE`` onto the intermediate list, then, in ONE
   ``MULTI``/``EXEC``, each job's execution record, StartedJobRegistry entry, worker
   name and ``started`` status, and its removal from the intermediate list): every
   claimed job is where :mod:`worker.recovery` looks for the jobs of a dead worker;
2. prepares all their envelopes (``worker.jobs.prepare_batch``: decoded, normalised,
   enriched; a bad envelope is a dead letter) and stores them in one batch, one
   transaction (``worker.jobs.store_batch``), in the worker's writer thread;
3. finishes them all in one pipeline, after the commit (a worker killed in between
   leaves them started: they are requeued and run again, and the store, idempotent on
   (product, message id), stores nothing twice).

While a batch is written, the worker claims and prepares the next (step 1 and the
preparing of step 2 for the jobs queued behind): both drivers let the GIL go while the
database works (SQLite's inserts go many rows per statement for this, see
``sightline.store.sql.execute_sqlite_rows``), so the preparing runs meanwhile on another
core. Batches are written one at a time, in the order they were claimed; a worker holds
at most the batch it writes and the one it prepares.

If the combined batch raises (a bug, not an outage), each job is run again on its own,
RQ's way, so only the job at fault fails; through a database outage every job gets
RQ's ``Retry`` as it would alone. A job recovered after its worker died is run on its own
(so a job that kills its worker never takes its neighbours to the failed registry), as
is anything not a plain ``process_batch`` job. The worker's heartbeat and state, which RQ
writes several times per job, are written at most once a second and when they change.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any, NamedTuple
from uuid import uuid4

from redis.client import Pipeline
from rq import Queue, Retry, SimpleWorker
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.timeouts import JobTimeoutException
from rq.utils import current_timestamp, now
from rq.worker.base import WorkerStatus

from sightline.queue import JOB_FUNCTION
from worker import jobs
from worker.batch import Prepared
from worker.recovery import RECOVERIES

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
"""Seconds between the worker heartbeats RQ would send several times per job. RQ's worker
key lives ``worker_ttl + 60`` s (minutes); liveness is :mod:`worker.recovery`'s key."""
CLAIM_ROUND = 64
"""Most jobs moved off the queue in one round trip."""


class SightlineWorker(SimpleWorker):
    """A :class:`~rq.SimpleWorker` that stores a backlog of batch jobs in one transaction."""

    max_events: int = 1
    """Envelopes one transaction may take from several jobs; 1 runs each job alone."""
    _writer: ThreadPoolExecutor | None = None
    """The thread that writes a batch while the next is prepared (made at the first)."""

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if (
            timeout is None
            and pipeline is None
            and self.last_heartbeat is not None
            and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_INTERVAL
        ):
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if not _combinable(job):
            super().execute_job(job, queue)
            return
        try:
            batch = [job, *self._claim(queue, self.max_events - _size(job), _size(job))]
            self._store_backlog(batch, queue)
        finally:
            self.set_state(WorkerStatus.IDLE)

    def _store_backlog(self, batch: list[Job], queue: Queue) -> None:
        """Store ``batch``, then the batches the queue still holds behind it, each in one
        transaction, until it is empty or a stop is requested. Each is written by this
        worker's writer thread while the next is claimed and prepared here (the drivers
        let the GIL go while the database works): the worker holds at most the batch it
        writes and the one it prepares, and leaves the rest to the other workers."""
        current, prepared = self._begin(batch, queue)
        while True:
            writing = self._write_behind(prepared)
            following = self._claim_following(current, queue)
            upcoming = self._begin(following, queue) if following else None
            outcome = self._wait(current, writing) if writing else prepared
            self._end(current, queue, outcome, last=upcoming is None)
            if upcoming is None:
                return
            self.heartbeat()
            current, prepared = upcoming

    def _claim_following(self, current: _Round, queue: Queue) -> list[Job]:
        """The next round's jobs (none once a stop is requested: RQ's warm shutdown)."""
        if self._stop_requested:
            return []
        return self._claim(queue, self.max_events, _envelopes(current.jobs) // len(current.jobs))

    def _begin(self, batch: list[Job], queue: Queue) -> tuple[_Round, _Outcome]:
        """Start ``batch``'s jobs (RQ's bookkeeping) and prepare their envelopes."""
        executions = self._start(batch, queue)
        timeout = max(j.timeout or queue.DEFAULT_TIMEOUT for j in batch)
        current = _Round(batch, executions, int(timeout))
        try:
            with self.death_penalty_class(current.timeout, JobTimeoutException, job_id=batch[0].id):
                return current, jobs.prepare_batch([e for j in batch for e in j.args[0]])
        except Exception:
            return current, _Raised()

    def _write_behind(self, prepared: _Outcome) -> Future[dict[str, int] | Retry] | None:
        """The prepared batch's write, started in the writer thread (None: nothing to write)."""
        if not isinstance(prepared, Prepared):
            return None
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-writer")
        return self._writer.submit(jobs.store_batch, prepared)

    def _wait(self, current: _Round, writing: Future[dict[str, int] | Retry]) -> _Outcome:
        try:
            with self.death_penalty_class(
                current.timeout, JobTimeoutException, job_id=current.jobs[0].id
            ):
                return writing.result()
        except JobTimeoutException:
            timed_out = _Raised()
            # One write at a time: the jobs fail (and run again) once this one has ended.
            log.warning("a batch outlived its jobs' timeout: they fail once its write ends")
            wait([writing])
            return timed_out
        except Exception:
            return _Raised()

    def _end(self, current: _Round, queue: Queue, outcome: _Outcome, *, last: bool) -> None:
        """RQ's end of each job of ``current``: done, retried (a database outage), or, when
        the batch raised (a bug, not an outage), each job run again on its own, RQ's way,
        so only the job at fault fails. ``last``: no round is started behind it."""
        batch, executions = current.jobs, current.executions
        assert not isinstance(outcome, Prepared), "a round ends stored, retried or raised"
        if isinstance(outcome, _Raised):
            if len(batch) == 1:
                self._finalize_failure(batch[0], queue, executions[0], outcome.exc_info)
                return
            log.error("a batch of %d jobs failed: running each on its own", len(batch),
                      exc_info=outcome.exc_info)  # fmt: skip
            for each, execution in zip(batch, executions, strict=True):
                self.perform_job(each, queue, execution)
            return
        ended = now()
        for each in batch:
            each.ended_at = ended
        if isinstance(outcome, Retry):
            for each, execution in zip(batch, executions, strict=True):
                self.handle_job_retry(each, queue, outcome, queue.started_job_registry, execution)
            return
        self._finish(batch, executions, idle=last)

    def teardown(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        super().teardown()  # type: ignore[no-untyped-call]

    def _claim(self, queue: Queue, budget: int, estimate: int) -> list[Job]:
        """Move queued jobs holding up to ``budget`` envelopes onto the intermediate list
        (as RQ's dequeue does, one job at a time), ``estimate`` envelopes a job to begin
        with; a job that is not to be combined goes back to the front of the queue."""
        claimed: list[Job] = []
        while budget > 0:
            average = math.ceil(_envelopes(claimed) / len(claimed)) if claimed else estimate
            count = max(1, min(CLAIM_ROUND, budget // max(1, average)))
            with self.connection.pipeline(transaction=False) as pipe:
                for _ in range(count):
                    pipe.lmove(queue.key, queue.intermediate_queue_key)
                moved = [_text(raw) for raw in pipe.execute() if raw is not None]
            if not moved:
                break
            back: list[str] = []
            gone: list[str] = []
            for job_id, job in zip(
                moved,
                self.job_class.fetch_many(
                    moved, connection=self.connection, serializer=self.serializer
                ),
                strict=True,
            ):
                if job is None:
                    gone.append(job_id)  # deleted since it was queued (RQ skips it too)
                elif budget > 0 and _combinable(job):
                    claimed.append(job)
                    budget -= _size(job)
                else:
                    back.append(job_id)
            if back or gone:
                with self.connection.pipeline() as pipe:
                    for job_id in [*back, *gone]:
                        pipe.lrem(queue.intermediate_queue_key, 1, job_id)
                    if back:
                        pipe.lpush(queue.key, *reversed(back))  # their places at the front
                    pipe.execute()
            if len(moved) < count or back:
                break
        return claimed

    def _start(self, batch: Sequence[Job], queue: Queue) -> list[Execution]:
        """RQ's two steps of starting a job (``prepare_execution``, then the job's
        ``prepare_job_execution``) for every job of ``batch``, in one transaction: each
        job's execution record (with this worker's name) and its StartedJobRegistry entry,
        the job ``started`` by this worker, off the intermediate list.

        ``Execution.create`` as RQ writes it, without its per-job registry objects (each
        resolves the serializer: a slow ``Protocol`` check, a tenth of the worker's time
        at one event per job)."""
        executions: list[Execution] = []
        started: dict[str, float] = {}
        ttl = max(self.get_heartbeat_ttl(job) for job in batch)
        with self.connection.pipeline() as pipe:
            for job in batch:
                execution = Execution(uuid4().hex, job.id, self.connection, worker_name=self.name)
                execution._job = job
                execution.save(ttl=ttl, pipeline=pipe)
                ExecutionRegistry(job.id, connection=pipe).add(execution, ttl=ttl, pipeline=pipe)
                started[execution.composite_key] = current_timestamp() + ttl
                self.executions[execution.id] = execution
                executions.append(execution)
                job.prepare_for_execution(self.name, pipeline=pipe)
                pipe.persist(job.key)
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.zadd(queue.started_job_registry.key, started)
            worker_executions = executions[0].worker_executions_key
            pipe.sadd(worker_executions, *started)
            pipe.expire(worker_executions, ttl + 60)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            pipe.execute()
        self.procline(f"Processing {len(batch)} jobs from {queue.name}")  # type: ignore[no-untyped-call]
        return executions

    def _finish(self, batch: Sequence[Job], executions: Sequence[Execution], *, idle: bool) -> None:
        """What RQ does for a successful job kept for no time (``result_ttl=0``): the job,
        its execution and their registry entries deleted; the worker's counters; its state
        idle if ``idle``. Not while another round is started: RQ takes a stop signal
        that comes while the worker is not busy for "stop now" (``StopRequested``, raised
        wherever the main thread is), and one that came while it waited for the next
        round's write was taken for that batch failing, its jobs run again one by one,
        and the stop lost (the worker went on; ``bench/scale.py`` found it)."""
        working = timedelta()
        with self.connection.pipeline() as pipe:
            for job, execution in zip(batch, executions, strict=True):
                pipe.delete(
                    execution.key,
                    job.key,
                    job.dependents_key,
                    job.dependencies_key,
                    ExecutionRegistry.key_template.format(job.id),
                    Result.get_key(job.id),  # type: ignore[no-untyped-call]
                )
                self.executions.pop(execution.id, None)
                assert job.started_at is not None and job.ended_at is not None
                working += job.ended_at - job.started_at
            done = [execution.composite_key for execution in executions]
            pipe.zrem(StartedJobRegistry.key_template.format(batch[0].origin), *done)
            pipe.srem(executions[0].worker_executions_key, *done)
            pipe.hincrby(self.key, "successful_job_count", len(batch))
            self.increment_total_working_time(working, pipe)
            if idle:
                self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            pipe.execute()


def _combinable(job: Job) -> bool:
    """A plain ``process_batch`` job as the collector writes it, never yet abandoned.

    Not one whose data cannot be read: RQ's own path fails that job alone."""
    try:
        return _plain(job)
    except Exception:
        return False


def _plain(job: Job) -> bool:
    return (
        job.func_name == JOB_FUNCTION
        and job.result_ttl == 0
        and not job.meta.get(RECOVERIES)
        and job.group_id is None
        and job.repeats_left is None
        and not job.has_rate_limit
        and not job.webhooks
        and not job._success_callback_name
        and not job._failure_callback_name
        and not job._dependency_ids
        and len(job.args) == 1
        and not job.kwargs
        and isinstance(job.args[0], list)
    )


class _Round(NamedTuple):
    """The jobs stored in one transaction."""

    jobs: list[Job]
    executions: list[Execution]
    timeout: int
    """Seconds (the longest of its jobs' timeouts) to prepare it, and to write it."""


class _Raised:
    """What preparing or writing a round raised (``sys.exc_info()``)."""

    __slots__ = ("exc_info",)

    def __init__(self) -> None:
        self.exc_info = sys.exc_info()


_Outcome = Prepared | dict[str, int] | Retry | _Raised
"""A round's state: prepared; stored; to be retried (an outage); or what it raised."""


def _envelopes(batch: Sequence[Job]) -> int:
    return sum(map(_size, batch))


def _size(job: Job) -> int:
    envelopes: list[Any] = job.args[0]
    return len(envelopes)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
