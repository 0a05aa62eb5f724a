"""Alembic driven from code: ``sightline migrate`` and ``sightline up`` upgrade; every other
process only checks the schema is current (:func:`require_current`) and refuses if not."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sightline.store.partitions import ensure_partitions, is_partition_table
from sightline.store.schema import exists_on

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Migrate to ``revision``; at the head, also create the months of events ahead
    (PostgreSQL: ``sightline.store.partitions``)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        if revision == "head":
            ensure_partitions(connection)


def include_object(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for comparing the schema with a database of
    ``dialect``: leaves out what exists on the other database only, and the partitions
    of ``events`` (made at run time, not by the schema)."""

    def include(item: object, name: str | None, kind: str, reflected: bool, _: object) -> bool:
        if kind == "table" and is_partition_table(name):
            return False
        return reflected or exists_on(dialect, item)

    return include


class SchemaNotCurrent(RuntimeError):
    """The database is not at the revision this code needs: ``sightline migrate`` first."""


@functools.cache
def head_revision() -> str | None:
    """The newest revision this code knows (read once per process)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    """The database's revision; ``None`` for a database never migrated (nothing is created)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: sa.Engine) -> bool:
    """Whether the database is at the newest revision this code knows."""
    return current_revision(engine) == head_revision()


def require_current(engine: sa.Engine) -> None:
    """Raise :class:`SchemaNotCurrent` (one line, no password) unless the schema is current."""
    found, needed = current_revision(engine), head_revision()
    if found != needed:
        raise SchemaNotCurrent(
            "the database schema is not current: run `sightline migrate` "
            f"({engine.url.render_as_string(hide_password=True)} is at revision "
            f"{found or 'none'}, this version needs {needed})"
        )
