"""Erasure over the API (``POST /api/v1/users/{id}/forget``, ``DELETE /api/v1/users/{id}``):
the product's server key or an admin token; never a write key, a read key, nor another
product's key; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.live import mark_viewing
from sightline.redis_keys import live_stream_key
from sightline.store.schema import events
from tests.api.support import bearer, token
from tests.harness import System, basic


def _setup(system: System) -> None:
    mark_viewing(system.redis, system.settings.queue_name)  # someone watches: published
    for user in ("quincy", "rosa"):
        body = {"userId": user, "anonymousId": f"a-{user}", "event": "Hello"}
        assert system.send("/v1/track", body).status_code == 200
    system.work()


def _of(system: System, user: str) -> int:
    query = sa.select(sa.func.count()).select_from(events).where(events.c.user_id == user)
    return int(system.sql(query)[0][0])


def _forget(system: System, user: str, headers: dict[str, str], **params: Any) -> Any:
    return system.client.post(f"/api/v1/users/{user}/forget", headers=headers, params=params)


def test_server_key_forgets_in_its_product(system: System) -> None:
    _setup(system)
    r = _forget(system, "quincy", bearer(system.server_key))
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["product_id"] == system.product.id
    assert receipt["requested_by"].startswith("server-key:")
    assert system.server_key not in r.text and "quincy" not in r.text
    assert receipt["deleted"]["events"] == 1 and receipt["completed_at"]
    assert receipt["deleted"]["live_stream"] == 1  # the stream in Redis: the other's only
    live = system.redis.xrange(live_stream_key(system.settings.queue_name))
    assert [msgspec.json.decode(f[b"e"])["user_id"] for _, f in live] == ["rosa"]
    assert (_of(system, "quincy"), _of(system, "rosa")) == (0, 1)
    # The same key as X-API-Key, and DELETE: the same receipt, a second request.
    r = system.client.delete("/api/v1/users/quincy", headers={"X-API-Key": system.server_key})
    assert r.status_code == 200, r.text
    assert r.json()["reference"] == receipt["reference"] and r.json()["requests"] == 2
    # Later events are dropped.
    assert system.send("/v1/track", {"userId": "quincy", "event": "Again"}).status_code == 200
    system.work()
    assert _of(system, "quincy") == 0


def test_admin_token_names_the_product(system: System) -> None:
    _setup(system)
    admin = token(system)
    r = system.client.delete("/api/v1/users/rosa", headers=bearer(admin))
    assert r.status_code == 400 and "product" in r.text
    r = system.client.delete(
        "/api/v1/users/rosa", headers=bearer(admin), params={"product": "nope"}
    )
    assert r.status_code == 404
    r = system.client.delete(
        "/api/v1/users/rosa", headers=bearer(admin), params={"product": system.product.id}
    )
    assert r.status_code == 200, r.text
    assert r.json()["requested_by"].startswith("token:")
    assert (_of(system, "quincy"), _of(system, "rosa")) == (1, 0)


def test_write_read_and_other_keys_are_refused(system: System) -> None:
    _setup(system)
    other = system.create_product("Other")
    refused = {
        "nothing": ({}, 401),
        "unknown": (bearer("sk_nope"), 401),
        "write key as Bearer": (bearer(system.write_key), 403),
        "write key as Basic": (basic(system.write_key), 403),
        "write key as X-Write-Key": ({"X-Write-Key": system.write_key}, 403),
        "write key as X-API-Key": ({"X-API-Key": system.write_key}, 403),
        "read key": (bearer(token(system, system.product.id)), 403),
        "another product's read key": (bearer(token(system, other.id)), 403),
    }
    for what, (headers, status) in refused.items():
        r = _forget(system, "quincy", headers)
        assert r.status_code == status, (what, r.status_code, r.text)
        r = system.client.delete("/api/v1/users/quincy", headers=headers)
        assert r.status_code == status, (what, r.status_code, r.text)
    # Another product's server key: refused for this product, and in its own product the
    # same id names nobody of this one.
    theirs = bearer(other.server_keys[0])
    r = _forget(system, "quincy", theirs, product=system.product.id)
    assert r.status_code == 403, r.text
    r = _forget(system, "quincy", theirs)
    assert r.status_code == 200 and r.json()["product_id"] == other.id
    assert r.json()["deleted"].get("events", 0) == 0
    assert _of(system, "quincy") == 1
    # Nothing under /debug.
    r = system.client.post("/debug/api/v1/users/quincy/forget", headers=bearer(system.server_key))
    assert r.status_code == 404
    assert _of(system, "quincy") == 1
