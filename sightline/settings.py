"""The one place environment variables are read.

Every process (collector, worker, CLI) builds a :class:`Settings` from a mapping,
``os.environ`` in production and a plain dict in tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_DATA_DIR = "sightline-data"
DEFAULT_QUEUE = "sightline"


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    redis_url: str | None = None
    """``None`` means: the embedded Redis server under ``data_dir``."""
    database_url: str | None = None
    """``None`` means: the SQLite file ``data_dir/sightline.db``."""
    geoip_db: str | None = None
    """A GeoIP2 / GeoLite2 City ``.mmdb``; ``None``: the one ``maxminddb-geolite2`` ships;
    ``"off"``: no geolocation."""
    geoip_asn_db: str | None = None
    """An optional GeoIP2 / GeoLite2 ASN ``.mmdb``: adds the network (ASN, organisation)."""
    queue_name: str = DEFAULT_QUEUE
    redis_timeout: float = 1.0
    """Seconds a Redis command may take before the collector answers 503."""
    flush_linger_ms: float = 0.0
    """How long a group-commit flush may wait for more events once one is pending."""
    flush_max_events: int = 2000
    key_refresh_seconds: float = 10.0
    job_timeout: int = 300
    max_retries: int = 8
    """RQ retries of a batch whose job raised: a bug, fixed and replayed from RQ's failed
    registry (``rq requeue``)."""
    outage_retry_hours: float = 168.0
    """How long a batch keeps being retried while the database is unreachable (every
    10 minutes after the first backoff steps) before it goes to the failed registry."""
    worker_liveness_ttl: float = 3.0
    """Seconds a worker's liveness key outlives its last heartbeat: a job whose worker
    has none for that long was abandoned (SIGKILL, lost host) and is requeued."""
    test_write_delay: float = 0.0
    """Test hook (``SIGHTLINE_TEST_WRITE_DELAY``): seconds a worker sleeps inside each
    batch's transaction, after the events are written and before the commit, so a fault
    test can kill it mid-batch. Always 0 in production."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            data_dir=Path(env.get("SIGHTLINE_DATA_DIR") or DEFAULT_DATA_DIR),
            redis_url=env.get("REDIS_URL") or None,
            database_url=env.get("DATABASE_URL") or None,
            geoip_db=env.get("GEOIP_DB") or None,
            geoip_asn_db=env.get("GEOIP_ASN_DB") or None,
            queue_name=env.get("SIGHTLINE_QUEUE") or DEFAULT_QUEUE,
            redis_timeout=_float(env, "SIGHTLINE_REDIS_TIMEOUT", 1.0),
            flush_linger_ms=_float(env, "SIGHTLINE_FLUSH_LINGER_MS", 0.0),
            flush_max_events=_int(env, "SIGHTLINE_FLUSH_MAX_EVENTS", 2000),
            key_refresh_seconds=_float(env, "SIGHTLINE_KEY_REFRESH_SECONDS", 10.0),
            job_timeout=_int(env, "SIGHTLINE_JOB_TIMEOUT", 300),
            max_retries=_int(env, "SIGHTLINE_MAX_RETRIES", 8),
            outage_retry_hours=_float(env, "SIGHTLINE_OUTAGE_RETRY_HOURS", 168.0),
            worker_liveness_ttl=_float(env, "SIGHTLINE_WORKER_LIVENESS_TTL", 3.0),
            test_write_delay=_float(env, "SIGHTLINE_TEST_WRITE_DELAY", 0.0),
        )

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sightline.db').resolve()}"

    @property
    def embedded_redis_socket(self) -> Path:
        return (self.data_dir / "redis.sock").resolve()
