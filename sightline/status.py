"""The live status line of ``sightline up``: accepted, stored, queued, dead letters."""

from __future__ import annotations

import msgspec
from redis import Redis

from sightline.queue import make_queue
from sightline.redis_keys import Counter, counter_key


class Status(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int
    """Envelopes answered 2xx (one per event, except multi-event calls such as Gameball's)."""
    processed: int
    stored: int
    duplicates: int
    dead_letters: int
    bots_dropped: int
    suppressed: int = 0
    """Events of erased people the workers dropped (``sightline users forget``)."""
    refused_changes: int = 0
    """User and account changes the write-key policy refused (their events were stored)."""
    queued_jobs: int

    @property
    def in_flight(self) -> int:
        """Envelopes accepted but not yet processed by a worker."""
        return max(self.accepted - self.processed, 0)

    def line(self) -> str:
        return (
            f"accepted {self.accepted}  stored {self.stored}  queued {self.in_flight} "
            f"({self.queued_jobs} jobs)  dead letters {self.dead_letters}"
        )


def read_status(redis: Redis, queue_name: str) -> Status:
    counters = list(Counter)
    values = redis.mget([counter_key(queue_name, c) for c in counters])
    figures = {
        c.value: int(v) if v is not None else 0 for c, v in zip(counters, values, strict=True)
    }
    return Status(**figures, queued_jobs=make_queue(redis, queue_name).count)
