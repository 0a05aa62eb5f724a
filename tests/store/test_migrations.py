"""The Alembic migrations create exactly the tables of ``sightline.store.schema``."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sightline.store.db import make_engine
from sightline.store.migrate import include_object, is_current
from sightline.store.schema import metadata


def test_migrated_database_matches_the_schema(database_url: str) -> None:
    engine = make_engine(database_url)  # the fixture's database was migrated to head
    try:
        assert is_current(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": include_object(conn.dialect.name)}
            )
            diff = compare_metadata(context, metadata)
        assert diff == []
    finally:
        engine.dispose()
