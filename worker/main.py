"""Running an RQ worker for Sightline's queue."""

from __future__ import annotations

import logging

from rq import SimpleWorker

from sightline.queue import make_queue
from sightline.redisconn import connect
from sightline.serializer import JSONSerializer
from sightline.settings import Settings
from worker import runtime
from worker.maintenance import Maintenance
from worker.recovery import Recovery


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Work the queue until stopped (or, with ``burst``, until it is empty).

    ``SimpleWorker`` runs jobs in this process: the GeoIP reader, user-agent cache
    and database pool loaded once serve every job, where a forking worker would
    rebuild them per job (measured: ~190 jobs/s against ~80/s). A :class:`Recovery`
    thread requeues, within seconds, the jobs of workers that died mid-job.
    """
    connection = connect(settings, timeout=None)
    rt = runtime.Runtime.build(settings)
    runtime.install(rt)
    queue = make_queue(connection, settings.queue_name)
    worker = SimpleWorker([queue], connection=connection, serializer=JSONSerializer, name=name)
    recovery = Recovery(
        connect(settings, timeout=5.0), queue, worker.name, settings.worker_liveness_ttl
    )
    recovery.start()
    maintenance = Maintenance.for_settings(settings)
    maintenance.start()
    try:
        return bool(
            worker.work(
                burst=burst,
                with_scheduler=True,
                logging_level=logging.getLevelName(logging.WARNING),
            )
        )
    finally:
        maintenance.stop()
        recovery.stop()
        recovery.connection.close()
        rt.close()
