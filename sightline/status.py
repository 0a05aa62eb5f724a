"""The live status line of ``sightline up``: accepted, stored, queued, dead letters."""

from __future__ import annotations

import msgspec
from redis import Redis

from collector.queue import make_queue
from sightline.redis_keys import Counter, counter_key


class Status(msgspec.Struct, frozen=True):
    accepted: int
    stored: int
    duplicates: int
    dead_letters: int
    queued_jobs: int

    @property
    def in_flight(self) -> int:
        """Events accepted but not yet stored, deduplicated or dead-lettered."""
        return max(self.accepted - self.stored - self.duplicates - self.dead_letters, 0)

    def line(self) -> str:
        return (
            f"accepted {self.accepted}  stored {self.stored}  queued {self.in_flight} "
            f"({self.queued_jobs} jobs)  dead letters {self.dead_letters}"
        )


def read_status(redis: Redis, queue_name: str) -> Status:
    counters = [Counter.ACCEPTED, Counter.STORED, Counter.DUPLICATES, Counter.DEAD_LETTERS]
    values = redis.mget([counter_key(queue_name, c) for c in counters])
    accepted, stored, duplicates, dead = (int(v) if v is not None else 0 for v in values)
    return Status(
        accepted=accepted,
        stored=stored,
        duplicates=duplicates,
        dead_letters=dead,
        queued_jobs=make_queue(redis, queue_name).count,
    )
