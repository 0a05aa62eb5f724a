"""The native (Segment-shaped) dialect end to end: HTTP -> Redis -> worker -> store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from sightline.model import EventType
from sightline.store.schema import accounts, aliases, user_attributes, users
from tests.harness import System


def test_track_is_stored_with_its_context(system: System) -> None:
    response = system.send(
        "/v1/track",
        {
            "userId": "u1",
            "event": "Signed Up",
            "properties": {"plan": "pro", "seats": 3},
            "timestamp": "2026-01-02T03:04:05Z",
            "messageId": "m-1",
            "context": {"page": {"url": "https://example.com/pricing"}, "sessionId": "s-9"},
        },
        headers={"User-Agent": "Mozilla/5.0 test"},
    )
    assert response.status_code == 200
    assert response.json() == {"success": True}
    system.work()
    [event] = system.events()
    assert event.name == "Signed Up"
    assert event.type is EventType.TRACK
    assert event.user_id == "u1"
    assert event.message_id == "m-1"
    assert event.product_id == system.product.id
    assert event.properties == {"plan": "pro", "seats": 3}
    assert event.timestamp.isoformat() == "2026-01-02T03:04:05+00:00"
    assert event.session_id == "s-9"
    assert event.context["page"] == {"url": "https://example.com/pricing"}
    assert event.context["userAgent"] == "Mozilla/5.0 test"
    assert event.context["ip"] is None  # the test client's peer, "testclient", is no address


@pytest.mark.parametrize(
    ("path", "body", "name", "kind"),
    [
        pytest.param("/v1/page", {"anonymousId": "a1", "name": "Home"}, "Home", "page", id="page"),
        pytest.param("/v1/page", {"anonymousId": "a1"}, "page_view", "page", id="unnamed-page"),
        pytest.param("/v1/screen", {"userId": "u", "name": "Feed"}, "Feed", "screen", id="screen"),
        pytest.param(
            "/v1/identify", {"userId": "u", "traits": {}}, "identify", "identify", id="identify"
        ),
        pytest.param("/v1/group", {"userId": "u", "groupId": "g"}, "group", "group", id="group"),
        pytest.param(
            "/v1/alias", {"userId": "u", "previousId": "old"}, "alias", "alias", id="alias"
        ),
    ],
)
def test_each_message_type(
    system: System, path: str, body: dict[str, Any], name: str, kind: str
) -> None:
    assert system.send(path, body).status_code == 200
    system.work()
    [event] = system.events()
    assert (event.name, event.type.value) == (name, kind)


def test_identify_creates_the_user_with_typed_traits_and_links_the_anonymous_id(
    system: System,
) -> None:
    system.send(
        "/v1/identify",
        {
            "userId": "u42",
            "anonymousId": "anon-1",
            "traits": {
                "email": "ada@example.com",
                "vip": True,
                "age": 36,
                "score": 9.5,
                "tags": ["a", "b"],
                "name": "Ada",
            },
        },
        key=system.server_key,  # a server's identify: the e-mail is the user's
    )
    system.work()
    [user] = system.sql(sa.select(users))
    assert (user.external_id, user.email) == ("u42", "ada@example.com")
    attributes = {r.name: (r.type, r.value) for r in system.sql(sa.select(user_attributes))}
    assert attributes["vip"] == ("bool", True)
    assert attributes["age"] == ("integer", 36)
    assert attributes["score"] == ("float", 9.5)
    assert attributes["tags"] == ("array", ["a", "b"])
    assert attributes["name"] == ("string", "Ada")
    [alias] = system.sql(sa.select(aliases))
    assert (alias.alias, alias.kind, alias.user_id) == ("anon-1", "anonymous", user.id)


def test_group_builds_an_account_tree_and_places_the_user(system: System) -> None:
    system.send(
        "/v1/group",
        {
            "userId": "u1",
            "groupId": "acme-retail",
            "traits": {"name": "Acme Retail", "parentId": "acme"},
        },
        key=system.server_key,  # account parents are server-only
    )
    acme = {"userId": "u2", "groupId": "acme", "traits": {"name": "Acme Corp"}}
    system.send("/v1/group", acme, key=system.server_key)  # its parent's: the server's
    system.work()
    rows = {r.external_id: r for r in system.sql(sa.select(accounts))}
    assert rows["acme-retail"].parent_id == rows["acme"].id
    assert rows["acme"].parent_id is None
    assert rows["acme"].name == "Acme Corp"
    placed = {r.external_id: r.account_id for r in system.sql(sa.select(users))}
    assert placed == {"u1": rows["acme-retail"].id, "u2": rows["acme"].id}


def test_alias_links_the_previous_id(system: System) -> None:
    system.send("/v1/alias", {"userId": "new-id", "previousId": "old-id"})
    system.work()
    [row] = system.sql(sa.select(aliases.c.alias, users.c.external_id).join(users))
    assert tuple(row) == ("old-id", "new-id")


def test_batch_stores_every_message(system: System) -> None:
    batch = [
        {"type": "identify", "userId": "u1", "traits": {"plan": "free"}},
        {"type": "track", "userId": "u1", "event": "Clicked"},
        {"type": "page", "anonymousId": "a", "name": "Docs"},
    ]
    response = system.client.post(
        "/v1/batch",
        json={"batch": batch, "writeKey": system.write_key, "sentAt": "2026-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.text
    assert system.status().in_flight == 3
    system.work()
    assert sorted(e.name for e in system.events()) == ["Clicked", "Docs", "identify"]
    status = system.status()
    assert (status.accepted, status.processed, status.stored, status.in_flight) == (3, 3, 3, 0)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("basic", id="basic-auth"),
        pytest.param("header", id="x-write-key"),
        pytest.param("body", id="writeKey-in-body"),
    ],
)
def test_every_way_to_pass_the_write_key(system: System, how: str) -> None:
    body: dict[str, Any] = {"userId": "u", "event": "E"}
    headers: dict[str, str] = {}
    if how == "basic":
        response = system.send("/v1/track", body)
    else:
        if how == "header":
            headers["X-Write-Key"] = system.write_key
        else:
            body["writeKey"] = system.write_key
        response = system.client.post("/v1/track", json=body, headers=headers)
    assert response.status_code == 200, response.text


def test_a_server_key_may_send_events_too(system: System) -> None:
    assert (
        system.send("/v1/track", {"userId": "u", "event": "E"}, key=system.server_key).status_code
        == 200
    )


def test_same_message_id_is_stored_once(system: System) -> None:
    body = {"userId": "u", "event": "E", "messageId": "dup-1"}
    assert system.send("/v1/track", body).status_code == 200
    assert system.send("/v1/track", body).status_code == 200
    system.work()
    assert len(system.events()) == 1
    assert system.status().duplicates == 1


def test_a_new_product_key_works_on_its_first_request(system: System) -> None:
    other = system.create_product("Other")  # after the collector loaded its key table
    response = system.send("/v1/track", {"userId": "u", "event": "E"}, key=other.write_keys[0])
    assert response.status_code == 200
    system.work()
    assert [e.product_id for e in system.events()] == [other.id]


def test_message_ids_are_generated_when_absent_and_differ(system: System) -> None:
    for _ in range(2):
        system.send("/v1/track", {"userId": "u", "event": "E"})
    system.work()
    ids = {e.message_id for e in system.events()}
    assert len(ids) == 2


def test_events_of_a_disabled_product_are_stored_unused(system: System) -> None:
    # Switched through the API: the collector decides the flag when it accepts an event.
    disabled = system.client.put(
        f"/v3/product/{system.product.id}",
        json={"is_enabled": False},
        headers={"X-API-Key": system.server_key},
    )
    assert disabled.status_code == 200
    system.send("/v1/track", {"userId": "u", "event": "E"})
    system.work()
    [event] = system.events()
    assert event.is_unused


def test_unique_message_ids_survive_many_requests(system: System) -> None:
    ids = [str(uuid.uuid4()) for _ in range(25)]
    for message_id in ids:
        system.send("/v1/track", {"userId": "u", "event": "E", "messageId": message_id})
    system.work()
    assert sorted(e.message_id for e in system.events()) == sorted(ids)
