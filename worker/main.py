"""Running an RQ worker for Sightline's queue."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from redis.exceptions import RedisError
from rq.exceptions import StopRequested

from sightline.gctuning import TunedGC
from sightline.queue import Job, make_queue
from sightline.redisconn import connect
from sightline.serializer import JSONSerializer
from sightline.settings import Settings
from worker import runtime
from worker.maintenance import Maintenance
from worker.recovery import Recovery
from worker.rqworker import SightlineWorker

log = logging.getLogger(__name__)

GC_YOUNG = 100_000
"""Allocations between two collections of the cyclic GC's young generation while a worker
works (Python's default is 700): more than a large batch keeps alive (see run_worker)."""


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Work the queue until stopped (or, with ``burst``, until it is empty).

    ``SimpleWorker`` runs jobs in this process: the GeoIP reader, user-agent cache
    and database pool loaded once serve every job, where a forking worker would
    rebuild them per job (measured: ~190 jobs/s against ~80/s). Ours,
    :class:`~worker.rqworker.SightlineWorker`, stores a backlog of jobs (up to
    ``SIGHTLINE_WORKER_MAX_EVENTS`` envelopes) in one transaction. A :class:`Recovery`
    thread requeues, within seconds, the jobs of workers that died mid-job.

    RQ quits when Redis goes away under a job (its bookkeeping raises). This process
    then waits for Redis and goes on as a new worker (a new name: the job it held is
    requeued by the recovery sweep as any dead worker's), so a Redis restart needs no
    process manager to restart the workers. SIGTERM or SIGINT meanwhile stops it.

    The cyclic garbage collector is tuned for batches while it works: what the process
    loaded before its first job (modules, the user-agent parser, the engine) is collected
    once and moved out of its sight (``gc.freeze``), and the young generation is collected every
    :data:`GC_YOUNG` allocations instead of 700. A batch keeps tens of thousands of
    objects alive until it is stored, which made collections frequent and each walk the
    batch again, or the whole heap: ~15 % of the worker's CPU (``bench/worker.py``).
    Few cycles are made (a few hundred objects in 30,000 events): memory does not grow.
    """
    connection = connect(settings, timeout=None)
    rt = runtime.Runtime.build(settings)
    runtime.install(rt)
    queue = make_queue(connection, settings.queue_name)
    maintenance = Maintenance.for_settings(settings)
    maintenance.start()
    worked = False
    _BATCH_GC.enter()
    try:
        while True:
            worker = SightlineWorker(
                [queue], connection=connection, serializer=JSONSerializer, name=name, job_class=Job
            )
            worker.max_events = settings.worker_max_events
            recovery = Recovery(
                connect(settings, timeout=5.0), queue, worker.name, settings.worker_liveness_ttl
            )
            try:
                recovery.start()
                worked = (
                    bool(
                        worker.work(
                            burst=burst,
                            with_scheduler=True,
                            logging_level=logging.getLevelName(logging.WARNING),
                        )
                    )
                    or worked
                )
            except (RedisError, OSError) as exc:  # RQ's teardown, with Redis still away
                if burst:
                    raise
                log.warning("worker %s ended without Redis: %r", worker.name, exc)
                with contextlib.suppress(Exception):
                    worker.unsubscribe()  # type: ignore[no-untyped-call]
            finally:
                recovery.stop()
                recovery.connection.close()
            # Not burst, not asked to stop: RQ quit on an error (Redis gone mid-job).
            if burst or getattr(worker, "_shutdown_requested_date", None) is not None:
                return worked
            log.warning("worker %s quit on an error; waiting for Redis to go on", worker.name)
            try:
                if not _redis_back(settings):
                    return worked
            except StopRequested:  # RQ's handler, still in place, took a SIGTERM first
                return worked
            name = None
    finally:
        _BATCH_GC.exit()
        maintenance.stop()
        rt.close()


_BATCH_GC = TunedGC(GC_YOUNG)
"""The cyclic GC tuned while at least one worker of this process works (see
:func:`run_worker`), as it was once none does (tests run workers in threads)."""


def _redis_back(settings: Settings, interval: float = 0.5) -> bool:
    """Wait until Redis answers (True), or a SIGTERM / SIGINT comes (False)."""
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    client = connect(settings, timeout=1.0)
    try:
        while not stopping.is_set():
            try:
                if client.ping():
                    log.warning("Redis answers again: a new worker takes over")
                    return True
            except (RedisError, OSError):
                pass
            stopping.wait(interval)
        return False
    finally:
        client.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
