"""A real collector on a real port for the real SDKs (``tests.browser.live.LiveCollector``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sightline.settings import Settings
from tests.browser.live import LiveCollector
from tests.servers import RedisServer


@pytest.fixture
def live(settings: Settings, redis_server: RedisServer) -> Iterator[LiveCollector]:
    """uvicorn serving ``create_app(settings)`` on 127.0.0.1, one product open to any origin."""
    with LiveCollector(settings, redis_server, origins=()) as collector:
        yield collector
