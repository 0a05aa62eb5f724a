"""Writing a batch of envelopes to Redis as ONE RQ job (blocking; run in a thread)."""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis
from rq import Queue, Retry

from collector.envelope import Envelope
from sightline.redis_keys import Counter, counter_key
from sightline.serializer import JSONSerializer

JOB_FUNCTION = "worker.jobs.process_batch"
# Backoff for infrastructure failures (database down): about 20 minutes in all.
RETRY_INTERVALS = (1, 2, 5, 10, 30, 60, 120, 300, 600)


def make_queue(connection: Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


class JobWriter:
    """Enqueues ``process_batch(envelopes)`` and counts the events in the same round trip."""

    def __init__(self, queue: Queue, *, max_retries: int, job_timeout: int) -> None:
        self._queue = queue
        self._retry = Retry(max=max_retries, interval=list(RETRY_INTERVALS[:max_retries]))
        self._job_timeout = job_timeout
        self._accepted_key = counter_key(queue.name, Counter.ACCEPTED)

    def write(self, envelopes: Sequence[Envelope]) -> str:
        with self._queue.connection.pipeline() as pipe:
            job = self._queue.enqueue_call(
                JOB_FUNCTION,
                args=(list(envelopes),),
                timeout=self._job_timeout,
                result_ttl=0,  # results are in the store; keep Redis small
                failure_ttl=30 * 24 * 3600,
                retry=self._retry,
                pipeline=pipe,
            )
            pipe.incrby(self._accepted_key, len(envelopes))
            pipe.execute()
        return job.id
