"""Start-up checks: the database and Redis answer, the schema is current.

``up``, ``collector``, ``worker`` and ``migrate`` run them before anything else, so a
wrong URL, a server that is down or a database never migrated ends the command at once
with one line naming the variable and the reason (:class:`SettingsError`, or
:class:`SchemaNotCurrent`) instead of a traceback later. No line shows a password.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from redis.exceptions import RedisError

from sightline.redisconn import connect, redis_url
from sightline.settings import Settings, SettingsError, hide_password
from sightline.store.db import make_engine
from sightline.store.migrate import SchemaNotCurrent, head_revision, require_current, upgrade

CONNECT_TIMEOUT = 5.0
"""Seconds a start-up check waits for a server to answer."""


def _reason(exc: BaseException, secret: str | None) -> str:
    """The driver's message on one line, without the password."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    return text


def check_redis(settings: Settings, timeout: float = CONNECT_TIMEOUT) -> None:
    """Redis answers a PING, else :class:`SettingsError` for ``REDIS_URL``."""
    url = redis_url(settings)
    shown = hide_password(url) if settings.redis_url else f"the embedded server at {url}"
    client = connect(settings, timeout=timeout)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise SettingsError(
            "REDIS_URL", f"cannot connect to {shown}: {_reason(exc, _password(url))}"
        ) from None
    finally:
        client.close()


def check_spool(settings: Settings) -> None:
    """The spool directory (``SIGHTLINE_SPOOL``) exists or can be made, and is writable."""
    directory = settings.spool_dir
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SettingsError(
            "SIGHTLINE_SPOOL", f"cannot create {directory}: {exc.strerror or exc}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SettingsError("SIGHTLINE_SPOOL", f"{directory} is not writable")


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite URL (``None`` for an in-memory or URI database)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    if url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return Path(url.database)


def open_store(
    settings: Settings, *, migrate: bool = False, timeout: float = CONNECT_TIMEOUT
) -> sa.Engine:
    """An engine on a reachable database whose schema is current.

    ``migrate``: bring the schema up to date first (``sightline migrate`` and ``up``
    only); otherwise a schema that is not current raises :class:`SchemaNotCurrent` and
    nothing is created (not even the SQLite file).
    """
    url = sa.make_url(settings.sqlalchemy_url)
    shown = url.render_as_string(hide_password=True)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None:
        if migrate and settings.database_url is None:
            try:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SettingsError(
                    "SIGHTLINE_DATA_DIR", f"cannot create {settings.data_dir}: {exc.strerror}"
                ) from None
        if not migrate and not sqlite_file.exists():
            raise SchemaNotCurrent(
                "the database schema is not current: run `sightline migrate` "
                f"({shown} does not exist, this version needs {head_revision()})"
            )
    connect_args = (
        {"connect_timeout": max(1, math.ceil(timeout))}
        if url.get_backend_name() == "postgresql"
        else {}
    )
    probe = sa.create_engine(url, poolclass=sa.NullPool, connect_args=connect_args)
    try:
        with probe.connect():
            pass
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise SettingsError(
            "DATABASE_URL", f"cannot connect to {shown}: {_reason(exc, url.password)}"
        ) from None
    finally:
        probe.dispose()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if migrate:
            upgrade(engine)
        else:
            require_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
