"""What a worker process loads once and every job reuses: engine, enrichment, Redis."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from redis import Redis

from sightline.redis_keys import Counter, counter_key
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.writer import WriteResult
from worker.batch import BatchProcessor
from worker.enricher import Enricher


@dataclass
class Runtime:
    settings: Settings
    engine: sa.Engine
    redis: Redis
    processor: BatchProcessor

    @classmethod
    def build(cls, settings: Settings, redis: Redis | None = None) -> Runtime:
        engine = make_engine(settings.sqlalchemy_url)
        return cls(
            settings=settings,
            engine=engine,
            redis=redis if redis is not None else connect(settings, timeout=5.0),
            processor=BatchProcessor(engine, Enricher()),
        )

    def count(self, result: WriteResult) -> None:
        """Feed ``sightline up``'s live status; figures only, never the source of truth."""
        with self.redis.pipeline(transaction=False) as pipe:
            name = self.settings.queue_name
            pipe.incrby(counter_key(name, Counter.STORED), result.stored)
            pipe.incrby(counter_key(name, Counter.DUPLICATES), result.duplicates)
            pipe.incrby(counter_key(name, Counter.DEAD_LETTERS), result.dead_letters)
            pipe.execute()

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()


class _Holder:
    runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make ``runtime`` the one this process's jobs use (the worker entry calls this)."""
    _Holder.runtime = runtime


def current() -> Runtime:
    """The installed runtime; a plain ``rq worker`` process builds one from the environment."""
    if _Holder.runtime is None:
        _Holder.runtime = Runtime.build(Settings.from_env())
    return _Holder.runtime
