"""Redis away or hung: 503 with Retry-After within about a second, never a 2xx, never a hang."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from redis import Redis

from collector.endpoints.pixel import GIF
from sightline.settings import Settings
from tests.harness import System, running_system
from tests.servers import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.resume()
    server.stop()


@pytest.fixture
def outage_system(
    own_redis: RedisServer, sqlite_template: Path, tmp_path: Path
) -> Iterator[System]:
    import shutil

    db = tmp_path / "outage.db"
    shutil.copyfile(sqlite_template, db)
    settings = Settings.from_env(
        {
            "REDIS_URL": own_redis.url,
            "DATABASE_URL": f"sqlite:///{db}",
            "SIGHTLINE_DATA_DIR": str(tmp_path),
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": "1",  # an outage test: short, not the suite's 5 s
        }
    )
    with running_system(settings) as system:
        yield system


def _send(system: System) -> tuple[int, float, dict[str, str]]:
    started = time.monotonic()
    response = system.send("/v1/track", {"userId": "u", "event": "E"})
    return response.status_code, time.monotonic() - started, dict(response.headers)


def test_hung_redis_gets_a_503_not_a_hang(outage_system: System, own_redis: RedisServer) -> None:
    assert _send(outage_system)[0] == 200
    own_redis.pause()
    status, elapsed, headers = _send(outage_system)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert elapsed < 5, f"took {elapsed:.1f} s: the request must not hang on a hung Redis"
    health = outage_system.client.get("/health")
    assert health.status_code == 503
    own_redis.resume()
    assert _send(outage_system)[0] == 200


def test_stopped_redis_gets_a_503_and_recovers(
    outage_system: System, own_redis: RedisServer
) -> None:
    own_redis.stop()
    status, _, headers = _send(outage_system)
    assert status == 503
    assert "retry-after" in headers
    own_redis.start()  # same port
    assert _send(outage_system)[0] == 200
    outage_system.work()
    assert len(outage_system.events()) == 1  # the 503 left nothing behind; the retry is stored


def test_every_2xx_is_in_redis(outage_system: System, own_redis: RedisServer) -> None:
    answers = [_send(outage_system)[0] for _ in range(5)]
    own_redis.pause()
    answers += [_send(outage_system)[0] for _ in range(2)]
    own_redis.resume()
    answers += [_send(outage_system)[0] for _ in range(3)]
    client = Redis.from_url(own_redis.url)
    ok = answers.count(200)
    assert ok == 8
    outage_system.work()
    stored = len(outage_system.events())
    client.close()
    # A 503 during a hang may still land later (the client retries with the same
    # messageId and it is deduplicated); a 2xx is never missing.
    assert stored >= ok


def _pixel(system: System, query: str) -> tuple[int, bytes, dict[str, str]]:
    response = system.client.get("/p.gif?" + query)
    return response.status_code, response.content, dict(response.headers)


def test_the_snippets_pixel_fallback_gets_a_503_without_an_image(
    outage_system: System, own_redis: RedisServer
) -> None:
    """An ``Image`` fires ``load`` for a GIF whatever the status: no image, so ``error``."""
    batch = {
        "writeKey": outage_system.write_key,
        "sentAt": "2026-03-01T12:00:00Z",
        "batch": [{"type": "track", "event": "Fallback", "userId": "u", "messageId": "m-1"}],
    }
    query = "d=" + quote(json.dumps(batch), safe="-_.!~*'()")
    own_redis.pause()
    status, body, headers = _pixel(outage_system, query)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert "no-store" in headers["cache-control"]
    assert headers["content-type"].startswith("text/plain")
    assert not body.startswith(b"GIF")
    own_redis.resume()
    status, body, headers = _pixel(outage_system, query)  # the snippet's retry
    assert (status, body, headers["content-type"]) == (200, GIF, "image/gif")
    outage_system.work()
    [event] = outage_system.events()  # the 503'd one, if it landed after all, is the same id
    assert (event.name, event.dialect) == ("Fallback", "pixel")


def test_an_image_tag_gets_a_503_gif_when_the_queue_is_away(
    outage_system: System, own_redis: RedisServer
) -> None:
    query = urlencode({"k": outage_system.write_key, "t": "track", "e": "Opened", "uid": "u"})
    own_redis.stop()
    status, body, headers = _pixel(outage_system, query)
    assert (status, body, headers["content-type"]) == (503, GIF, "image/gif")
    assert headers["retry-after"] == "1"
    assert "no-store" in headers["cache-control"]
