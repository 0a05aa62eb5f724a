"""Requeue the jobs of workers that died mid-job, within seconds.

RQ finds an abandoned job only when the job's StartedJobRegistry entry has expired
(a SimpleWorker sets it to the job timeout + 60 s) and a worker then runs its
maintenance pass (every 600 s by default): a batch could wait a quarter of an hour
after its worker was SIGKILLed. Every Sightline worker therefore runs a small
thread that

- keeps a liveness key alive (``SET ... PX ttl`` every ``ttl / 3``), and registers
  the worker in the queue's set of Sightline workers;
- sweeps the queue's StartedJobRegistry: a job whose worker is a registered Sightline
  worker with no liveness key is abandoned. One live worker claims it (``ZREM`` of
  the registry entry: exactly one caller removes it) and puts it back at the front of
  the queue.

It also sweeps RQ's intermediate list (``rq:queue:<name>:intermediate``): a worker
moves a job there from the queue, then into the StartedJobRegistry a moment later. A
worker killed between the two strands the job where neither the registry sweep nor
the status line sees it, and RQ itself fails it only on its next maintenance pass
(about 11 minutes). A job seen in that list, outside the registry, on two sweeps at
least ``ttl`` apart (a live worker takes milliseconds) is claimed by the one sweeper
whose ``LREM`` removes it, and put back at the front of the queue.

A Redis that dies while a worker takes a job can leave it between those steps: in
the registry (RQ records the execution, with its worker, first) but still marked
``queued`` with no worker, and still on the intermediate list. The registry sweep
finds the owner through the execution record, and takes the job off the intermediate
list when it claims it (so it is requeued once). RQ quits on an error it cannot
handle (Redis gone mid-job) with the job in the registry: a worker leaves the set of
Sightline workers only when it holds no started job, so the others' sweep still
recognises the job as abandoned.

Running the batch again is safe: the store is idempotent on (product, message id)
and a killed transaction was rolled back. Jobs of workers this module does not
know (a plain ``rq worker``) are left to RQ's own maintenance. A job abandoned more
than ``MAX_RECOVERIES`` times (one that kills every worker running it) goes to the
failed registry instead of around the loop again.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.defaults import RQ_KEY_PREFIX
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import parse_composite_key

from sightline.redis_keys import worker_alive_key, workers_key

log = logging.getLogger(__name__)

MAX_RECOVERIES = 3
RECOVERIES = "sightline_recoveries"
"""The job meta field counting how often a job was requeued from a dead worker."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Recovery:
    """This worker's liveness heartbeat and the sweep for abandoned jobs, in one thread."""

    def __init__(self, connection: Redis, queue: Queue, worker_name: str, ttl: float) -> None:
        self.connection = connection
        self.queue = queue
        self.worker_name = worker_name
        self.ttl = ttl
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._stranded: dict[str, float] = {}
        """Jobs seen in the intermediate list outside the registry, and since when."""

    def start(self) -> None:
        self.beat()  # before the first job, so no sweeper takes this worker for dead
        with self.connection.pipeline() as pipe:
            pipe.sadd(workers_key(self.queue.name), self.worker_name)
            pipe.execute()
        self.sweep()
        self._thread = threading.Thread(target=self._run, name="sightline-recovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.connection.delete(worker_alive_key(self.queue.name, self.worker_name))
            # Leaving with a job in the started registry (RQ quits on an error it cannot
            # handle, such as Redis going away mid-job): stay registered, so the others'
            # sweep, finding no liveness key, requeues the job now.
            if not self._running(self.worker_name):
                self.connection.srem(workers_key(self.queue.name), self.worker_name)
        except RedisError as exc:
            log.warning("could not deregister worker %s: %s", self.worker_name, exc)

    def beat(self) -> None:
        self.connection.set(
            worker_alive_key(self.queue.name, self.worker_name), b"1", px=int(self.ttl * 1000)
        )

    def _run(self) -> None:
        interval = self.ttl / 3
        while not self._stopped.wait(interval):
            try:
                self.beat()
                self.sweep()
            except (RedisError, OSError) as exc:  # Redis down: try again next tick
                log.warning("recovery tick failed: %s", exc)
            except Exception:  # this loop must outlive any one bad job record
                log.exception("recovery tick failed")

    def sweep(self) -> list[str]:
        """Requeue abandoned and stranded jobs; returns their ids."""
        return self._sweep_started() + self._sweep_intermediate()

    def _sweep_intermediate(self) -> list[str]:
        key = self.queue.intermediate_queue_key
        started = StartedJobRegistry(
            self.queue.name, connection=self.connection, serializer=self.queue.serializer
        )
        now = time.monotonic()
        listed = {_text(raw) for raw in self.connection.lrange(key, 0, -1)}
        self._stranded = {k: v for k, v in self._stranded.items() if k in listed}
        requeued: list[str] = []
        for job_id in listed:
            if job_id in started:
                continue
            if now - self._stranded.setdefault(job_id, now) < self.ttl:
                continue
            if not self.connection.lrem(key, 1, job_id):
                continue  # another sweeper claimed it, or its worker moved on
            del self._stranded[job_id]
            try:
                job = Job.fetch(
                    job_id, connection=self.connection, serializer=self.queue.serializer
                )
            except NoSuchJobError:
                continue
            self.queue.enqueue_job(job, at_front=True)
            log.warning("requeued job %s: stranded in RQ's intermediate list", job_id)
            requeued.append(job_id)
        return requeued

    def _sweep_started(self) -> list[str]:
        """Requeue the jobs of dead Sightline workers; returns their ids."""
        registry = StartedJobRegistry(
            self.queue.name, connection=self.connection, serializer=self.queue.serializer
        )
        known = {_text(name) for name in self.connection.smembers(workers_key(self.queue.name))}
        owners = self._owners(registry.key)
        suspects = sorted({w for w in owners.values() if w in known and w != self.worker_name})
        with self.connection.pipeline(transaction=False) as pipe:
            for worker in suspects:
                pipe.exists(worker_alive_key(self.queue.name, worker))
            dead = {w for w, alive in zip(suspects, pipe.execute(), strict=True) if not alive}
        requeued: list[str] = []
        for entry, worker in owners.items():
            if worker not in dead:
                continue
            job_id, _ = parse_composite_key(entry)
            # Dead. Exactly one sweeper wins the ZREM and requeues.
            if not self.connection.zrem(registry.key, entry):
                continue
            # Killed before it took the job off the intermediate list (Redis went away
            # between the two steps): that sweep must not requeue it a second time.
            self.connection.lrem(self.queue.intermediate_queue_key, 0, job_id)
            if self._requeue(job_id, worker):
                requeued.append(job_id)
        for worker in dead:
            if not self._running(worker):
                self.connection.srem(workers_key(self.queue.name), worker)
        return requeued

    def _owners(self, registry_key: str) -> dict[str, str]:
        """The worker running each started job (entries of ``registry_key``): the job's
        ``worker_name``, else (RQ sets that a step after the registry entry, and a Redis
        that died in between keeps the entry alone) the worker of the entry's execution
        record. Entries of jobs that no longer exist are left out (RQ's maintenance tidies
        them). Two pipelined round trips, however many jobs are started: a worker holds a
        whole backlog at once (``worker.rqworker``)."""
        entries = [_text(raw) for raw in self.connection.zrange(registry_key, 0, -1)]
        with self.connection.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hget(Job.key_for(parse_composite_key(entry)[0]), "worker_name")
            named = dict(zip(entries, pipe.execute(), strict=True))
        unnamed = [entry for entry, owner in named.items() if owner is not None and not owner]
        with self.connection.pipeline(transaction=False) as pipe:
            for entry in unnamed:
                pipe.hget(f"{RQ_KEY_PREFIX}:execution:{entry}", "worker_name")
            named.update(zip(unnamed, pipe.execute(), strict=True))
        return {entry: _text(owner) for entry, owner in named.items() if owner}

    def _running(self, worker: str) -> bool:
        """Whether ``worker`` still has a job in the started registry."""
        registry = StartedJobRegistry(
            self.queue.name, connection=self.connection, serializer=self.queue.serializer
        )
        return worker in self._owners(registry.key).values()

    def _requeue(self, job_id: str, worker: str) -> bool:
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=self.queue.serializer)
        except NoSuchJobError:
            return False
        status = job.get_status()
        # QUEUED: its worker died before marking it started (see ``_owners``), unless it
        # is back in the queue already.
        if status == JobStatus.QUEUED:
            if job_id in self.queue.get_job_ids():
                return False
        elif status != JobStatus.STARTED:
            return False
        recoveries = int(job.meta.get(RECOVERIES, 0)) + 1
        job.meta[RECOVERIES] = recoveries
        job.save_meta()  # type: ignore[no-untyped-call]
        if recoveries > MAX_RECOVERIES:
            message = f"abandoned {recoveries} times (last by worker {worker}): not requeued"
            log.error("job %s %s", job_id, message)
            job.set_status(JobStatus.FAILED)
            FailedJobRegistry(
                self.queue.name, connection=self.connection, serializer=self.queue.serializer
            ).add(job, exc_string=message)
            return False
        self.queue.enqueue_job(job, at_front=True)
        log.warning(
            "requeued job %s: its worker %s died mid-job (recovery %d at %.3f)",
            job_id,
            worker,
            recoveries,
            time.time(),
        )
        return True
