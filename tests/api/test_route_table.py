"""The authorisation matrix over the whole route table: every route that returns stored
data refuses a write key (and a server key), and a read key of another product sees
nothing of this product, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from collector.directory import KeyKind
from collector.routes import ENDPOINTS
from collector.routing import Endpoint
from sightline.store.writer import DeadLetter, write_dead_letters
from tests.api.support import bearer, token, track
from tests.harness import System, basic

READ_ROUTES = [e for e in ENDPOINTS if e.reads]
VENDOR_READS = [e for e in ENDPOINTS if e.key is KeyKind.SERVER and e.methods == ("GET",)]
"""The seed dialects' own read APIs (Fuzy /v3, Pyze profiles, DAS search): server key only."""
ADMIN_ONLY = {"api.product_keys", "api.replay_all", "api.replay_one"}
STREAMING = {"api.live"}  # never ends: checked against a real server in test_live.py


def test_every_read_route_is_declared_as_reading() -> None:
    assert READ_ROUTES and VENDOR_READS
    for endpoint in ENDPOINTS:
        if endpoint.name.startswith("api."):
            assert endpoint.reads, f"{endpoint.name} is in the read API without reads=True"
        if endpoint.reads:
            assert endpoint.key is None, "read routes take read credentials, not product keys"


def _path(endpoint: Endpoint, ids: dict[str, str], key: str = "x") -> str:
    return endpoint.path.replace("{id}", ids.get(endpoint.name, "x")).replace("{key}", key)


@pytest.fixture
def stored(system: System) -> dict[str, str]:
    """One product's data: an event of user u1 in account acme, a dead letter."""
    track(system, "Secret Plan", context={"groupId": "acme"}, properties={"plan": "pro"})
    r = system.send("/v1/group", {"userId": "u1", "groupId": "acme", "traits": {"n": 1}})
    assert r.status_code == 200
    system.work()
    with system.engine.begin() as conn:
        write_dead_letters(
            conn,
            [DeadLetter("schema", "why", {"v": 1}, product_id=system.product.id)],
            datetime.now(UTC),
        )
    (event,) = [e for e in system.events() if e.name == "Secret Plan"]
    (letter,) = system.dead_letters()
    return {
        "api.event": event.id,
        "api.user": "u1",
        "api.account": "acme",
        "api.replay_one": str(letter.id),
        "api.product_keys": system.product.id,
    }


def _call(
    system: System, endpoint: Endpoint, path: str, headers: dict[str, str], **params: Any
) -> Any:
    method = endpoint.methods[0]
    return system.client.request(method, path, headers=headers, params=params)


def test_write_and_server_keys_read_nothing(system: System, stored: dict[str, str]) -> None:
    write_key = {
        "no credential": {},
        "write key as Basic": basic(system.write_key),
        "write key as Bearer": bearer(system.write_key),
        "write key as X-Write-Key": {"X-Write-Key": system.write_key},
        "write key as X-API-Key": {"X-API-Key": system.write_key},
        "write key as APIKey": {"APIKey": system.write_key},
    }
    server_key = {
        "server key as Bearer": bearer(system.server_key),
        "server key as Basic": basic(system.server_key),
    }
    for endpoint in VENDOR_READS:  # the write key, even in the path, reads nothing
        path = _path(endpoint, stored, key=system.write_key)
        for what, headers in write_key.items():
            r = _call(system, endpoint, path, headers)
            assert r.status_code in (401, 403), (endpoint.name, what, r.status_code)
            assert "Secret Plan" not in r.text
    for endpoint in READ_ROUTES:
        path = _path(endpoint, stored)
        for what, headers in (write_key | server_key).items():
            r = _call(system, endpoint, path, headers, product=system.product.id)
            assert r.status_code in (401, 403), (endpoint.name, what, r.status_code)
            assert system.product.id not in r.text and "Secret Plan" not in r.text
        # The write key in the query string or body is no credential either.
        r = system.client.request(endpoint.methods[0], path, params={"writeKey": system.write_key})
        assert r.status_code == 401, endpoint.name


def test_a_read_key_of_another_product_sees_nothing(system: System, stored: dict[str, str]) -> None:
    other = system.create_product("Other")
    theirs = token(system, other.id)
    mine = token(system, system.product.id)
    admin = token(system)
    for endpoint in READ_ROUTES:
        path = _path(endpoint, stored)
        # Asking for this product by name: refused (where a product can be named).
        r = _call(system, endpoint, path, bearer(theirs), product=system.product.id)
        if any(p["name"] == "product" for p in endpoint.parameters) or "{id}" in endpoint.path:
            assert r.status_code in (403, 404), (endpoint.name, r.status_code)
        assert "Secret Plan" not in r.text, endpoint.name
        if endpoint.name in STREAMING:
            continue
        # Not naming it: only their own (empty) product, nothing of this one.
        r = _call(system, endpoint, path, bearer(theirs))
        assert r.status_code in (200, 202, 403, 404), (endpoint.name, r.status_code)
        assert system.product.id not in r.text and "Secret Plan" not in r.text, endpoint.name
        if endpoint.methods[0] != "GET":
            continue
        # The product's own read key and the admin token do read it.
        for credential in (admin,) if endpoint.name in ADMIN_ONLY else (mine, admin):
            r = _call(system, endpoint, path, bearer(credential), product=system.product.id)
            assert r.status_code == 200, (endpoint.name, r.status_code, r.text)
