"""The one place environment variables are read.

Every process (collector, worker, CLI) builds a :class:`Settings` from a mapping,
``os.environ`` in production and a plain dict in tests. :data:`VARIABLES` declares
every variable once (its name, the field it sets, how it is parsed and checked);
:meth:`Settings.from_env` iterates it, the CLI's options override the fields, and a
test checks the README's configuration table against it.

A value we cannot use raises :class:`SettingsError`: one line naming the variable and
the reason (the CLI prints it and exits with status 2). No message ever shows a
password: URLs are rendered with it hidden.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATA_DIR = "sightline-data"
DEFAULT_QUEUE = "sightline"
FSYNC_CHOICES = ("always", "everysec")
METRICS_LOOPBACK_CHOICES = ("open", "token")
MIN_METRICS_TOKEN = 16
REDIS_SCHEMES = ("redis", "rediss", "unix")
DATABASE_BACKENDS = ("sqlite", "postgresql")
SPOOL_WORDS = ("off", "on")


class SettingsError(ValueError):
    """A variable holds a value we cannot use, or names a server we cannot reach."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


def hide_password(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: safe to print."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def hide_database_password(url: str) -> str:
    """A SQLAlchemy URL with its password hidden (``URL.render_as_string``)."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return hide_password(url)


# --- parsers: the raw, non-empty value -> the field's value, or ValueError(reason) ------


def _text(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    return Path(raw)


def _number(raw: str, kind: type[float] | type[int]) -> float:
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"must be {noun}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {raw!r}")
    return value


def _positive_float(raw: str) -> float:
    value = _number(raw, float)
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {raw!r}")
    return value


def _non_negative_float(raw: str) -> float:
    value = _number(raw, float)
    if value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return value


def _positive_int(raw: str) -> int:
    value = int(_number(raw, int))
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(_number(raw, int))
    if value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return value


def _port(raw: str) -> int:
    value = int(_number(raw, int))
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number from 1 to 65535, got {raw!r}")
    return value


def _flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be on or off (1/0, true/false, yes/no), got {raw!r}")


def _fsync(raw: str) -> str:
    if raw not in FSYNC_CHOICES:
        raise ValueError(f"must be one of {', '.join(FSYNC_CHOICES)}, got {raw!r}")
    return raw


def _metrics_token(raw: str) -> str:
    # Not echoed: it is a secret.
    if len(raw) < MIN_METRICS_TOKEN or any(c.isspace() or not c.isprintable() for c in raw):
        raise ValueError(
            f"must be at least {MIN_METRICS_TOKEN} printable characters without spaces "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    return raw


def _metrics_loopback(raw: str) -> str:
    if raw not in METRICS_LOOPBACK_CHOICES:
        raise ValueError(f"must be one of {', '.join(METRICS_LOOPBACK_CHOICES)}, got {raw!r}")
    return raw


def _redis_url(raw: str) -> str:
    shown = hide_password(raw)
    try:
        parts = urlsplit(raw)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError(f"not a valid URL: {shown}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {shown}")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"a unix:// URL needs the socket's path, got {shown}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"names no host: {shown}")
    return raw


def _database_url(raw: str) -> str:
    import sqlalchemy as sa

    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError:
        # Not echoed: what cannot be parsed may hold a password.
        raise ValueError(
            "not a database URL (e.g. sqlite:///path/to/sightline.db or "
            "postgresql+psycopg://user:password@host/db)"
        ) from None
    backend = url.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        raise ValueError(
            f"unknown database driver {url.drivername!r}: Sightline stores in sqlite or "
            "postgresql (e.g. postgresql+psycopg://user:password@host/db)"
        )
    try:
        dialect = url.get_dialect()
    except sa.exc.NoSuchModuleError:
        raise ValueError(f"unknown database driver {url.drivername!r}") from None
    if getattr(dialect, "is_async", False):
        raise ValueError(f"{url.drivername!r} is an asyncio driver; use a synchronous one")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the driver of {url.drivername!r} is not installed ({exc.name or exc})"
        ) from None
    return raw


def _existing_file(raw: str) -> str:
    if not Path(raw).is_file():
        raise ValueError(f"no such file: {raw}")
    return raw


def _geoip_city(raw: str) -> str:
    return raw if raw == "off" else _existing_file(raw)


def _spool(raw: str) -> str:
    if raw in SPOOL_WORDS:
        return raw
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise ValueError(f"must be off, on or a directory; {raw} is not a directory")
    return raw


@dataclass(frozen=True)
class Variable:
    """One environment variable: the :class:`Settings` field it sets and its parser."""

    name: str
    field: str
    parse: Callable[[str], Any]


VARIABLES: tuple[Variable, ...] = (
    Variable("SIGHTLINE_DATA_DIR", "data_dir", _path),
    Variable("REDIS_URL", "redis_url", _redis_url),
    Variable("DATABASE_URL", "database_url", _database_url),
    Variable("GEOIP_DB", "geoip_db", _geoip_city),
    Variable("GEOIP_ASN_DB", "geoip_asn_db", _existing_file),
    Variable("SIGHTLINE_QUEUE", "queue_name", _text),
    Variable("SIGHTLINE_REDIS_TIMEOUT", "redis_timeout", _positive_float),
    Variable("SIGHTLINE_FLUSH_LINGER_MS", "flush_linger_ms", _non_negative_float),
    Variable("SIGHTLINE_FLUSH_MAX_EVENTS", "flush_max_events", _positive_int),
    Variable("SIGHTLINE_KEY_REFRESH_SECONDS", "key_refresh_seconds", _positive_float),
    Variable("SIGHTLINE_JOB_TIMEOUT", "job_timeout", _positive_int),
    Variable("SIGHTLINE_MAX_RETRIES", "max_retries", _non_negative_int),
    Variable("SIGHTLINE_OUTAGE_RETRY_HOURS", "outage_retry_hours", _non_negative_float),
    Variable("SIGHTLINE_WORKER_LIVENESS_TTL", "worker_liveness_ttl", _positive_float),
    Variable("SIGHTLINE_WORKER_MAX_EVENTS", "worker_max_events", _positive_int),
    Variable("SIGHTLINE_HOST", "host", _text),
    Variable("PORT", "port", _port),
    Variable("SIGHTLINE_FSYNC", "fsync", _fsync),
    Variable("TRUSTED_PROXIES", "trusted_proxies", _text),
    Variable("SIGHTLINE_WORKERS", "workers", _non_negative_int),
    Variable("SIGHTLINE_COLLECTORS", "collectors", _positive_int),
    Variable("SIGHTLINE_SPOOL", "spool", _spool),
    Variable("SIGHTLINE_SPOOL_MAX_BYTES", "spool_max_bytes", _positive_int),
    Variable("SIGHTLINE_RETENTION_DAYS", "retention_days", _positive_int),
    Variable("SIGHTLINE_SHARED_RATE_LIMITS", "shared_rate_limits", _flag),
    Variable("SIGHTLINE_METRICS_TOKEN", "metrics_token", _metrics_token),
    Variable("SIGHTLINE_METRICS_LOOPBACK", "metrics_loopback", _metrics_loopback),
)
"""Every variable Sightline reads; an unset or empty variable leaves the field's default."""


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
    """Seconds RQ lets one batch job run before it counts as failed."""
    max_retries: int = 8
    """RQ retries of a batch whose job raised: a bug, fixed and replayed from RQ's failed
    registry (``rq requeue``)."""
    outage_retry_hours: float = 168.0
    """How long a batch keeps being retried while the database is unreachable (every
    10 minutes after the first backoff steps) before it goes to the failed registry."""
    worker_liveness_ttl: float = 3.0
    """Seconds a worker's liveness key outlives its last heartbeat: a job whose worker
    has none for that long was abandoned (SIGKILL, lost host) and is requeued."""
    worker_max_events: int = 2000
    """Envelopes a worker stores in one transaction, taken from as many queued jobs
    (collector flushes) as hold them when the queue has a backlog; 1: a job at a time."""
    host: str = "127.0.0.1"
    """The collector's listening address (``sightline up`` / ``sightline collector``)."""
    port: int = 8000
    """The collector's port."""
    fsync: str = "everysec"
    """The embedded Redis's append-only fsync policy: ``always`` or ``everysec``."""
    trusted_proxies: str = "127.0.0.1"
    """Proxies whose ``X-Forwarded-For`` is believed (uvicorn's ``forwarded_allow_ips``:
    comma-separated addresses or networks, ``*`` for any)."""
    workers: int = 0
    """Worker processes ``sightline up`` runs and keeps running; 0: one per core."""
    collectors: int = 1
    """Collector processes ``sightline up`` runs on one listening socket."""
    spool: str = "off"
    """Where a collector spools flushes Redis did not acknowledge (``collector.spool``):
    ``off``, ``on`` (``data_dir/spool``) or a directory."""
    spool_max_bytes: int = 256 << 20
    """The most one collector's spool file may hold; a flush past it is answered 503."""
    retention_days: int | None = None
    """Events (and their sessions and daily rollups) older than this many days are
    removed by the workers, hourly (``sightline.store.partitions``); ``None``: kept."""
    shared_rate_limits: bool = False
    """Count the products' rate limits in Redis, shared by every collector process (one
    round trip per request of a limited product), not in each process alone."""
    metrics_token: str | None = None
    """The bearer token ``GET /metrics`` takes (a Prometheus scrape config's
    ``authorization: credentials``); ``None``: only loopback scrapes are answered."""
    metrics_loopback: str = "open"
    """``open``: a scrape straight from a loopback address (no forwarding header) needs no
    token; ``token``: every scrape needs it."""

    @property
    def spool_dir(self) -> Path | None:
        if self.spool == "off":
            return None
        return self.data_dir / "spool" if self.spool == "on" else Path(self.spool)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            raw = env.get(variable.name)
            if raw is None or raw == "":
                continue
            try:
                values[variable.field] = variable.parse(raw)
            except ValueError as exc:
                raise SettingsError(variable.name, str(exc)) from None
        return cls(**values)

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def overridden(self, **options: object) -> Settings:
        """These settings with the CLI options that were given (``None``: not given)."""
        return self.with_changes(**{k: v for k, v in options.items() if v is not None})

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sightline.db').resolve()}"

    @property
    def embedded_redis_socket(self) -> Path:
        return (self.data_dir / "redis.sock").resolve()


def default_of(field: str) -> Any:
    """The default of a :class:`Settings` field (for the CLI's help)."""
    [found] = [f for f in fields(Settings) if f.name == field]
    return found.default
