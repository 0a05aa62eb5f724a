"""Privacy at the edge: with ``truncated`` or ``none`` IP handling the whole client address
never reaches Redis (its jobs, its append-only file), the store or the dead letters, while
the location found from it does (``collector.privacy``).

The collector runs against an embedded Redis with ``appendonly yes`` and ``appendfsync
always`` (as ``sightline up --fsync always``), so what Redis wrote is in its AOF when the
answer comes; the test reads every key and every job both ways.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis import Redis
from starlette.testclient import TestClient

from collector.app import create_app
from sightline.embedded import EmbeddedRedis
from sightline.model import IpHandling
from sightline.settings import Settings
from sightline.store.db import make_engine
from sightline.store.products import ProductSettings, create_product, update_product
from sightline.store.queries import list_dead_letters, recent_events
from tests.harness import REDIS_TIMEOUT, basic
from worker.main import run_worker

PEER = "81.2.69.142"  # Willesden, London, in the shipped GeoLite2 City database
PEER_V6 = "2a02:8108:1:2:3:4:5:6"
KEPT = {IpHandling.TRUNCATED: "81.2.69.0", IpHandling.NONE: None}
WILLESDEN = {
    "country_code": "GB",
    "country": "United Kingdom",
    "region": "Brent",
    "region_code": "BEN",
    "city": "Willesden",
}


def resp_commands(aof: bytes) -> Iterator[list[bytes]]:
    """The commands of a RESP append-only file (``*N`` arrays of ``$len`` strings)."""
    position = 0
    while position < len(aof):
        if aof[position : position + 1] != b"*":  # an RDB preamble or a comment: skip a line
            position = aof.index(b"\n", position) + 1
            continue
        end = aof.index(b"\r\n", position)
        count = int(aof[position + 1 : end])
        position = end + 2
        command = []
        for _ in range(count):
            end = aof.index(b"\r\n", position)
            length = int(aof[position + 1 : end])
            command.append(aof[end + 2 : end + 2 + length])
            position = end + 2 + length + 2
        yield command


def aof_files(data_dir: Path) -> list[Path]:
    """The append-only file(s): one file, or Redis 7's ``appendonlydir``."""
    return sorted([*data_dir.glob("*.aof"), *data_dir.glob("appendonlydir/*.aof")])


def aof_jobs(data_dir: Path) -> list[bytes]:
    """The RQ job data (inflated) written to the append-only file."""
    jobs = []
    for path in aof_files(data_dir):
        for command in resp_commands(path.read_bytes()):
            if command[0].upper() in (b"HSET", b"HMSET") and command[1].startswith(b"rq:job:"):
                fields = dict(zip(command[2::2], command[3::2], strict=True))
                if b"data" in fields:
                    jobs.append(zlib.decompress(fields[b"data"]))
    return jobs


def redis_contents(client: Redis) -> list[bytes]:
    """Every value in Redis, job data inflated."""
    values: list[bytes] = []
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"string":
            values.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                values.append(zlib.decompress(value) if field == b"data" else value)
        elif kind == b"list":
            values += client.lrange(key, 0, -1)
        elif kind == b"zset":
            values += client.zrange(key, 0, -1)
        elif kind == b"set":
            values += list(client.smembers(key))
    return values


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis", fsync="always") as redis:
        yield redis


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("policy", [IpHandling.TRUNCATED, IpHandling.NONE], ids=str)
def test_no_whole_address_reaches_redis_the_aof_the_store_or_dead_letters(
    tmp_path: Path, database_url: str, embedded: EmbeddedRedis, policy: IpHandling
) -> None:
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": embedded.url,
            "DATABASE_URL": database_url,
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
        }
    )
    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        product = create_product(conn, "Private")
        update_product(conn, product.id, ProductSettings(ip_handling=policy))
    key = product.write_keys[0]
    page: dict[str, Any] = {
        "anonymousId": "a1",
        "messageId": "m-page",
        "name": "Home",
        # every copy of the peer's address, and an address in an address member
        "properties": {"seen_from": PEER, "nested": [{"again": PEER}]},
        "context": {"ip": PEER, "page": {"url": "https://site.example/"}},
    }
    v6 = {"userId": "u1", "event": "Six", "messageId": "m-six", "context": {"ip": PEER_V6}}
    # A message the worker dead-letters (a session id over the column's length).
    bad = {"userId": "u1", "event": "Bad", "context": {"ip": PEER, "sessionId": "s" * 300}}
    app = create_app(settings)
    with TestClient(app, client=(PEER, 50000)) as client:
        for path, body in (("/v1/page", page), ("/v1/track", v6), ("/v1/track", bad)):
            answer = client.post(path, json=body, headers=basic(key))
            assert answer.status_code == 200, answer.text
        # a pixel hit: the peer alone
        pixel = client.get("/p.gif", params={"k": key, "u": "https://site.example/p"})
        assert pixel.status_code == 200
        redis = Redis.from_url(embedded.url)
        in_redis = redis_contents(redis)
        jobs = [zlib.decompress(redis.hget(k, "data") or b"") for k in redis.keys("rq:job:*")]
    in_aof = aof_jobs(embedded.data_dir)
    assert len(jobs) == 4 and len(in_aof) >= 4
    for blob in [*in_redis, *in_aof]:
        assert PEER.encode() not in blob and b"8108:1:2:3" not in blob
    aof_text = b"".join(p.read_bytes() for p in aof_files(embedded.data_dir))
    assert PEER.encode() not in aof_text
    # What travels instead: the kept address and the location found from the whole one.
    envelopes = [e for job in jobs for e in msgspec.json.decode(job)[2][0]]
    assert {e.get("ip") for e in envelopes} == {KEPT[policy]}
    by_kind = {e["kind"]: e for e in envelopes}
    assert by_kind["page"]["geo"] == WILLESDEN
    assert by_kind["pixel"]["geo"] == WILLESDEN
    assert by_kind["page"]["body"]["properties"] == {
        "seen_from": KEPT[policy],
        "nested": [{"again": KEPT[policy]}],
    }
    assert by_kind["page"]["body"]["context"]["ip"] == KEPT[policy]

    run_worker(settings, burst=True)
    with engine.connect() as conn:
        stored = {e.message_id: e for e in recent_events(conn, product_id=product.id)}
        [letter] = list_dead_letters(conn, include_replayed=True)
    home = stored["m-page"]
    assert home.context["ip"] == KEPT[policy]
    assert home.context["geo"] == WILLESDEN  # not looked up again from the kept address
    assert home.properties["seen_from"] == KEPT[policy]
    six = stored["m-six"]
    assert six.context["ip"] == (None if policy is IpHandling.NONE else "2a02:8108:1::")
    assert "geo" in six.context and six.context["geo"].get("country_code") == "DE"
    assert letter.reason == "size"
    assert PEER not in msgspec.json.encode(letter.envelope).decode()
    assert letter.envelope["geo"] == WILLESDEN
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_full_addresses_travel_as_before_and_old_envelopes_decode(
    tmp_path: Path, database_url: str, embedded: EmbeddedRedis
) -> None:
    from sightline.envelope import envelope_from_job

    old = {
        "id": "e1",
        "dialect": "native",
        "kind": "track",
        "product_id": "p",
        "received_at": "2026-11-30T00:00:00Z",
        "ip": PEER,
        "body": {"userId": "u", "event": "E"},
    }
    assert envelope_from_job(old).geo is None
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": embedded.url,
            "DATABASE_URL": database_url,
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
        }
    )
    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        product = create_product(conn, "Full")
    with TestClient(create_app(settings), client=(PEER, 50000)) as client:
        body = {"userId": "u", "event": "E", "messageId": "m1"}
        assert client.post("/v1/track", json=body, headers=basic(product.write_keys[0])).is_success
    run_worker(settings, burst=True)
    with engine.connect() as conn:
        [event] = recent_events(conn, product_id=product.id)
    assert event.context["ip"] == PEER
    assert event.context["geo"]["city"] == "Willesden"
    assert "postal_code" in event.context["geo"]  # the worker's full lookup
    engine.dispose()
