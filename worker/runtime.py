"""What a worker process loads once and every job reuses: engine, enrichment, Redis."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import RedisError

from sightline.live import Viewers, publish
from sightline.redis_keys import Counter, counter_key
from sightline.redisconn import connect
from sightline.settings import Settings
from sightline.store.db import WalCheckpointer, make_engine
from sightline.store.migrate import require_current
from sightline.store.writer import WriteResult
from worker.batch import BatchProcessor
from worker.enricher import Enricher

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: sa.Engine
    redis: Redis
    processor: BatchProcessor
    enricher: Enricher
    """The user-agent parser, GeoIP reader and enrichment caches: built once per process."""
    bots_dropped: int = 0
    """Bot events this process dropped for products that drop them (never stored)."""
    checkpointer: WalCheckpointer | None = None
    """SQLite: the WAL checkpointed in a thread of its own (``sightline.store.db``)."""
    viewers: Viewers | None = field(default=None)
    """Whether anyone watches the live stream (``sightline.live``): checked once a second."""
    refused_changes: int = 0
    """User and account changes this process refused under the write-key policy."""

    @classmethod
    def build(cls, settings: Settings, redis: Redis | None = None) -> Runtime:
        engine = make_engine(settings.sqlalchemy_url, background_checkpoint=True)
        _refuse_a_schema_not_current(engine)
        enricher = Enricher.from_settings(settings)
        checkpointer = WalCheckpointer.for_engine(engine)
        if checkpointer is not None:
            checkpointer.start()
        return cls(
            checkpointer=checkpointer,
            settings=settings,
            engine=engine,
            redis=redis if redis is not None else connect(settings, timeout=5.0),
            processor=BatchProcessor(engine, enricher),
            enricher=enricher,
        )

    def count(self, result: WriteResult, envelopes: int) -> None:
        """Feed ``sightline up``'s live status; figures only, never the source of truth.

        Never raises: the batch is committed, and a Redis gone away now must not fail
        the job (RQ would run it again, or quit with it in hand)."""
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                name = self.settings.queue_name
                pipe.incrby(counter_key(name, Counter.PROCESSED), envelopes)
                pipe.incrby(counter_key(name, Counter.STORED), result.stored)
                pipe.incrby(counter_key(name, Counter.DUPLICATES), result.duplicates)
                pipe.incrby(counter_key(name, Counter.DEAD_LETTERS), result.dead_letters)
                pipe.incrby(counter_key(name, Counter.BOTS_DROPPED), result.bots_dropped)
                pipe.incrby(counter_key(name, Counter.SUPPRESSED), result.suppressed)
                pipe.incrby(counter_key(name, Counter.REFUSED_CHANGES), result.refused_changes)
                pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not count a stored batch of %d: %s", envelopes, exc)
        if result.bots_dropped:
            self.bots_dropped += result.bots_dropped
            log.info("dropped %d bot events (%d so far)", result.bots_dropped, self.bots_dropped)
        if result.refused_changes:
            self.refused_changes += result.refused_changes
            log.warning(
                "the write-key policy refused %d user/account changes (%d so far; events stored)",
                result.refused_changes,
                self.refused_changes,
            )

    def publish(self, result: WriteResult) -> None:
        """The batch's newly stored events to the live stream (after its commit), only
        while someone watches it (``sightline.live``)."""
        if not result.stored:
            return
        if self.viewers is None:
            self.viewers = Viewers(self.settings.queue_name)
        if not self.viewers.present(self.redis):
            return
        gap = self.viewers.gap_due
        if publish(self.redis, self.settings.queue_name, result.stored_rows(), gap=gap) and gap:
            self.viewers.gap_due = False

    def close(self) -> None:
        self.enricher.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
        self.redis.close()


def _refuse_a_schema_not_current(engine: sa.Engine) -> None:
    """Raise :class:`~sightline.store.migrate.SchemaNotCurrent` for a database that
    ``sightline migrate`` has not brought up to date: a worker never migrates.

    A database unreachable right now is an outage, not a refusal: the jobs retry through
    it (``worker.jobs``), and the schema is checked by the next process to start.
    """
    try:
        require_current(engine)
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        log.warning("database unreachable at start, jobs will retry: %s", exc)
    finally:
        # No connection may outlive the check in the pool: RQ forks its scheduler next,
        # and a socket the child inherited would keep a SIGKILLed worker's transaction
        # (and its row locks) open on PostgreSQL.
        engine.dispose()


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
