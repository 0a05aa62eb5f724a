"""Writing RQ jobs from synchronous test code, exactly as the collector writes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue

from sightline.queue import Command, JobBuilder


def write_sync(redis: Redis, commands: list[Command]) -> None:
    """The collector's write (``collector.groupcommit.write_async``), from synchronous code."""
    with redis.pipeline(transaction=True) as pipe:
        for args, options in commands:
            pipe.execute_command(*args, **options)  # type: ignore[no-untyped-call]
        pipe.execute()


class JobWriter:
    """Builds and sends one job as the collector does."""

    def __init__(self, queue: Queue, *, max_retries: int, job_timeout: int) -> None:
        self._builder = JobBuilder(queue, max_retries=max_retries, job_timeout=job_timeout)
        self._redis = queue.connection

    def write(self, envelopes: Sequence[Any]) -> None:
        write_sync(self._redis, self._builder.commands(envelopes))
