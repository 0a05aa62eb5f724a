"""The Alembic migrations create exactly the tables of ``sightline.store.schema``."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sightline.store.db import make_engine
from sightline.store.migrate import include_object, is_current
from sightline.store.schema import TIME_INDEX_COLUMNS, metadata


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


PARTIAL = {
    "ix_events_product_user": "user_id IS NOT NULL",
    "ix_events_product_account": "account_id IS NOT NULL",
    "ix_events_product_entity": "entity_type IS NOT NULL",
    # the other way round (migration 0012): an identified event is in the user index only
    "ix_events_product_anonymous": "user_id IS NULL",
}


def test_the_person_account_and_entity_indexes_hold_the_events_that_have_one(
    database_url: str,
) -> None:
    """Migration 0011: an event without a user id, account or entity costs those indexes
    no insert (the comparison above does not look at an index's condition); on
    PostgreSQL the event keys' time index is a BRIN index. Migration 0012: an event with
    a user id costs the anonymous index none."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                found = dict(
                    conn.exec_driver_sql(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                    ).all()
                )
            else:
                found = dict(
                    conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes").all()
                )
                assert "USING brin" in found["ix_event_keys_timestamp"]
        for name, condition in PARTIAL.items():
            assert found[name].replace("(", "").replace(")", "").endswith(f"WHERE {condition}")
        # the user id, always NULL in it, is none of its columns
        assert "user_id" not in found["ix_events_product_anonymous"].split("WHERE")[0]
    finally:
        engine.dispose()


def test_the_time_index_is_keyed_by_the_product_and_the_time(database_url: str) -> None:
    """Migration 0013: on PostgreSQL the stats' columns of ``ix_events_product_time`` are
    INCLUDE columns (an insert compares the product and the time only); SQLite, which has
    no INCLUDE, keeps them as key columns (still covering)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                columns = [
                    row[2]
                    for row in conn.exec_driver_sql("PRAGMA index_info(ix_events_product_time)")
                ]
                assert columns == list(TIME_INDEX_COLUMNS)
                return
            keys, included = conn.exec_driver_sql(
                "SELECT i.indnkeyatts, i.indnatts - i.indnkeyatts FROM pg_index i "
                "WHERE i.indexrelid = 'ix_events_product_time'::regclass"
            ).one()
            definition = conn.exec_driver_sql(
                "SELECT pg_get_indexdef('ix_events_product_time'::regclass)"
            ).scalar_one()
        assert (keys, included) == (2, len(TIME_INDEX_COLUMNS) - 2), definition
        assert 'USING btree (product_id, "timestamp") INCLUDE (is_bot, type' in definition
    finally:
        engine.dispose()
