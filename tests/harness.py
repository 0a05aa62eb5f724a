"""A whole Sightline in a test: the collector app, real Redis, a real database, burst workers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from redis import Redis
from starlette.testclient import TestClient

from collector.app import create_app
from sightline.model import Event
from sightline.queue import make_queue
from sightline.settings import Settings
from sightline.status import Status, read_status
from sightline.store.db import make_engine
from sightline.store.products import Product, create_product, ensure_default_product
from sightline.store.queries import list_dead_letters, recent_events
from worker.main import run_worker

REDIS_TIMEOUT = "5"
"""The suite's SIGHTLINE_REDIS_TIMEOUT: generous, so a busy machine never turns a write into
a 503; only the outage tests set a short one, explicitly."""


METRICS_TOKEN = "test-metrics-token-0123456789"
"""The suite's SIGHTLINE_METRICS_TOKEN: the test client is no loopback peer."""


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


class System:
    def __init__(self, settings: Settings, client: TestClient, engine: sa.Engine, product: Product):
        self.settings = settings
        self.client = client
        self.engine = engine
        self.product = product
        self.redis = Redis.from_url(settings.redis_url or "")

    @property
    def write_key(self) -> str:
        return self.product.write_keys[0]

    @property
    def server_key(self) -> str:
        return self.product.server_keys[0]

    def send(self, path: str, body: Any, key: str | None = None, **kwargs: Any) -> Any:
        headers = basic(key or self.write_key) | kwargs.pop("headers", {})
        return self.client.post(path, json=body, headers=headers, **kwargs)

    def metrics(self) -> str:
        """``GET /metrics`` as Prometheus scrapes it (with the bearer token)."""
        response = self.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 200, response.text
        return str(response.text)

    def work(self) -> None:
        """Run a worker in burst mode until the queue is empty."""
        run_worker(self.settings, burst=True)

    def events(self, product_id: str | None = None, limit: int = 10_000) -> list[Event]:
        with self.engine.connect() as conn:
            return recent_events(conn, product_id=product_id, limit=limit)

    def dead_letters(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list_dead_letters(conn, include_replayed=True)

    def status(self) -> Status:
        return read_status(self.redis, self.settings.queue_name)

    def queued_jobs(self) -> int:
        return make_queue(self.redis, self.settings.queue_name).count

    def create_product(self, name: str, origins: tuple[str, ...] = ()) -> Product:
        with self.engine.begin() as conn:
            return create_product(conn, name, allowed_origins=origins)

    def sql(self, statement: Any) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement))


@contextmanager
def running_system(settings: Settings) -> Iterator[System]:
    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        product, _ = ensure_default_product(conn)
    app = create_app(settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            system = System(settings, client, engine, product)
            yield system
            system.redis.close()
    finally:
        engine.dispose()
