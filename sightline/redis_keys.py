"""Every Redis key Sightline itself writes, built in one place (RQ names its own)."""

from __future__ import annotations

from datetime import date
from enum import Enum

PREFIX = "sightline"


class Counter(str, Enum):
    ACCEPTED = "accepted"  # envelopes answered 2xx by a collector (written with the job)
    PROCESSED = "processed"  # envelopes a worker finished (stored, duplicate or dead letter)
    STORED = "stored"  # events a worker committed to the store
    DUPLICATES = "duplicates"  # events a worker found already stored (retries, replays)
    DEAD_LETTERS = "dead_letters"  # envelopes or messages a worker could not store
    BOTS_DROPPED = "bots_dropped"  # bot events of products that drop them
    SUPPRESSED = "suppressed"  # events of erased people (sightline users forget), dropped
    REFUSED_CHANGES = "refused_changes"  # user/account changes the write-key policy refused


def counter_key(queue_name: str, counter: Counter) -> str:
    return f"{PREFIX}:{queue_name}:stats:{counter.value}"


def worker_alive_key(queue_name: str, worker_name: str) -> str:
    """Set with a short TTL while a Sightline worker lives (see ``worker.recovery``)."""
    return f"{PREFIX}:{queue_name}:worker:{worker_name}:alive"


def workers_key(queue_name: str) -> str:
    """The set of Sightline workers of a queue."""
    return f"{PREFIX}:{queue_name}:workers"


def cookieless_salt_key(day: date) -> str:
    """The random salt of one UTC day for cookieless visitor ids (``collector.salts``)."""
    return f"{PREFIX}:cookieless-salt:{day.isoformat()}"


def live_stream_key(queue_name: str) -> str:
    """The capped stream of stored events (``XADD ... MAXLEN ~``) behind ``/api/v1/live``."""
    return f"{PREFIX}:{queue_name}:live"


def live_viewers_key(queue_name: str) -> str:
    """Set with a short TTL while a collector serves ``/api/v1/live`` to someone: workers
    publish stored events to the live stream only while it exists (``sightline.live``)."""
    return f"{PREFIX}:{queue_name}:live:viewers"


def login_code_key(code_hash: str) -> str:
    """A one-time dashboard login code (by its SHA-256), with a short TTL."""
    return f"{PREFIX}:login:{code_hash}"


def session_key(session_hash: str) -> str:
    """A dashboard session (by the SHA-256 of its cookie), with a TTL."""
    return f"{PREFIX}:session:{session_hash}"


def rate_limit_key(product_id: str, scope: str, who: str = "") -> str:
    """A shared rate limit's counter for the current one-second window
    (``SIGHTLINE_SHARED_RATE_LIMITS``; ``collector.ratelimit.SharedLimits``)."""
    return f"{PREFIX}:rate:{product_id}:{scope}:{who}"
