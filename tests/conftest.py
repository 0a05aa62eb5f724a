"""Fixtures that start real servers (Redis, PostgreSQL): nothing is mocked."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from redis import Redis

from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade
from tests.harness import METRICS_TOKEN, REDIS_TIMEOUT, System, running_system
from tests.servers import (
    TEMPLATE_DB,
    PostgresServer,
    RedisServer,
    new_postgres_database,
    postgres_available,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer | None]:
    if not postgres_available():
        yield None
        return
    # Not under pytest's tmp dir: that is private to root, and the cluster runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="sightline-pg-"))
    workdir.chmod(0o755)
    server = PostgresServer(workdir)
    server.start()
    engine = make_engine(server.url())
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    engine.dispose()
    template = make_engine(server.url(TEMPLATE_DB))
    upgrade(template)
    template.dispose()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_server: PostgresServer | None,
) -> str:
    """A fresh, migrated database: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "sightline.db"
        shutil.copyfile(sqlite_template, target)
        return f"sqlite:///{target}"
    if postgres_server is None:
        pytest.skip("initdb / pg_ctl not installed")
    return new_postgres_database(postgres_server)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, database_url: str) -> Settings:
    return Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
            "SIGHTLINE_METRICS_TOKEN": METRICS_TOKEN,
        }
    )


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    with running_system(settings) as running:
        yield running
