"""Migrations are one explicit step: ``sightline migrate`` (or ``up``). The collector, the
worker and every other command refuse a database whose schema is not current, in one
line, and create nothing."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from collector.app import create_app
from sightline.settings import Settings
from sightline.store.migrate import SchemaNotCurrent
from tests.cli.test_config import sightline
from tests.servers import PostgresServer, free_port
from tests.test_settings import SECRET
from worker.main import run_worker

NOT_CURRENT = "Error: the database schema is not current: run `sightline migrate` ("
REFUSING = [
    ["collector", "--port", str(free_port())],
    ["worker", "--burst"],
    ["events", "list"],
    ["products", "list"],
    ["products", "create", "Shop"],
    ["products", "origins", "prd_x", "--any"],
    ["deadletters", "list"],
    ["deadletters", "replay"],
]


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]


def refused_as_not_current(cwd: Path, command: list[str], **env: str) -> str:
    result = sightline(cwd, *command, **env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(NOT_CURRENT), line
    return line


def test_an_empty_sqlite_database_is_refused_until_migrated(tmp_path: Path, redis_url: str) -> None:
    db = tmp_path / "empty.db"
    db.touch()  # an empty SQLite database
    env = {"DATABASE_URL": f"sqlite:///{db}", "REDIS_URL": redis_url}
    for command in REFUSING:
        line = refused_as_not_current(tmp_path, command, **env)
        assert f"sqlite:///{db} is at revision none" in line
    assert tables(db) == [], "nothing was created"
    settings = Settings.from_env(env)
    with pytest.raises(SchemaNotCurrent), TestClient(create_app(settings)):
        pass
    with pytest.raises(SchemaNotCurrent):
        run_worker(settings, burst=True)
    assert tables(db) == []

    migrated = sightline(tmp_path, "migrate", **env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"database at the newest revision: sqlite:///{db}\n"
    assert "alembic_version" in tables(db)

    for command in (["events", "list"], ["products", "list"], ["worker", "--burst"]):
        result = sightline(tmp_path, *command, **env)
        assert result.returncode == 0, result.stderr
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
    run_worker(settings, burst=True)  # starts, finds the queue empty, returns


def test_a_fresh_data_dir_is_not_created_by_a_read(tmp_path: Path) -> None:
    line = refused_as_not_current(tmp_path, ["events", "list"])
    assert "sightline.db does not exist" in line
    assert not (tmp_path / "data").exists()
    assert sightline(tmp_path, "migrate").returncode == 0
    assert sightline(tmp_path, "events", "list").returncode == 0


def test_the_collector_command_refuses_before_it_listens(tmp_path: Path, redis_url: str) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    port = free_port()
    refused_as_not_current(
        tmp_path,
        ["collector", "--port", str(port)],
        DATABASE_URL=f"sqlite:///{db}",
        REDIS_URL=redis_url,
    )
    assert tables(db) == []


@pytest.mark.postgres
def test_postgresql_migrate_hides_the_password(
    tmp_path: Path, redis_url: str, postgres_server: PostgresServer | None
) -> None:
    if postgres_server is None:
        pytest.skip("initdb / pg_ctl not installed")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    # The test cluster trusts local connections: the password is sent and ignored.
    url = postgres_server.url(name).replace("postgres@", f"postgres:{SECRET}@")
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url}
    shown = url.replace(SECRET, "***")
    line = refused_as_not_current(tmp_path, ["worker", "--burst"], **env)
    assert f"{shown} is at revision none" in line
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []

    migrated = sightline(tmp_path, "migrate", **env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"database at the newest revision: {shown}\n"
    assert SECRET not in migrated.stdout + migrated.stderr
    with engine.connect() as conn:
        assert "alembic_version" in sa.inspect(conn).get_table_names()
    engine.dispose()
    assert sightline(tmp_path, "worker", "--burst", **env).returncode == 0
