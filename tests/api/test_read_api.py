"""The query API against real SQLite and PostgreSQL: filters, cursor paging, one event,
users and accounts, dead letters and their replay."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sightline.store.writer import DeadLetter, write_dead_letters
from tests.api.support import bearer, get, token
from tests.harness import System


def send(system: System, path: str, **body: Any) -> None:
    # Account trees are server-only (the write-key policy): group calls take the server key.
    r = system.send(path, body, key=system.server_key if path == "/v1/group" else None)
    assert r.status_code == 200, r.text


@pytest.fixture
def data(system: System) -> System:
    """anon-1 browses, logs in as u1 (account child, under acme); u2 in acme; noise."""
    t = "2026-11-0{}T10:00:00Z".format
    send(system, "/v1/page", anonymousId="anon-1", name="Home", timestamp=t(1))
    send(system, "/v1/identify", anonymousId="anon-1", userId="u1", traits={"plan": "pro"})
    send(system, "/v1/group", userId="u1", groupId="child", traits={"parentId": "acme"})
    send(system, "/v1/group", userId="u2", groupId="acme", traits={"name": "Acme"})
    send(
        system,
        "/v1/track",
        userId="u1",
        event="Bought",
        timestamp=t(2),
        properties={"plan": "pro", "amount": 12, "trial": False, "cart": {"size": "xl"}},
    )
    send(
        system,
        "/v1/track",
        userId="u2",
        event="Bought",
        timestamp=t(3),
        properties={"plan": "free", "amount": 0},
    )
    send(system, "/v1/track", userId="u3", event="Viewed", timestamp=t(4))
    system.work()
    return system


def names(r: Any) -> list[tuple[str, str | None]]:
    assert r.status_code == 200, r.text
    return [(e["name"], e["user_id"] or e["anonymous_id"]) for e in r.json()["events"]]


def test_event_filters(data: System) -> None:
    key = token(data, data.product.id)
    events = "/api/v1/events"
    assert names(get(data, events, key, name="Bought")) == [("Bought", "u2"), ("Bought", "u1")]
    assert names(get(data, events, key, type="page")) == [("Home", "anon-1")]
    r = data.client.get(events, params=[("name", "Home"), ("name", "Viewed")], headers=bearer(key))
    assert names(r) == [("Viewed", "u3"), ("Home", "anon-1")]
    assert names(get(data, events, key, type="track", **{"from": "2026-11-03T00:00:00Z"})) == [
        ("Viewed", "u3"),
        ("Bought", "u2"),
    ]
    assert names(get(data, events, key, type="track", to="2026-11-03T00:00:00Z")) == [
        ("Bought", "u1")
    ]
    # The user filter follows the alias: the page view before the login is u1's.
    assert [n for n, _ in names(get(data, events, key, user="u1", type="page,track"))] == [
        "Bought",
        "Home",
    ]
    assert names(get(data, events, key, user="anon-1", type="track")) == [("Bought", "u1")]
    # The account filter includes sub-accounts (child under acme) and members' events.
    assert names(get(data, events, key, account="acme", type="track")) == [
        ("Bought", "u2"),
        ("Bought", "u1"),
    ]
    assert names(get(data, events, key, account="child", type="track")) == [("Bought", "u1")]
    # Property equality: strings, numbers, booleans, nested paths; portable.
    for params, expected in (
        ({"property.plan": "pro"}, ["u1"]),
        ({"property.amount": "12"}, ["u1"]),
        ({"property.amount": "0"}, ["u2"]),
        ({"property.trial": "false"}, ["u1"]),
        ({"property.cart.size": "xl"}, ["u1"]),
        ({"property.cart": "xl"}, []),
        ({"property.plan": "pro", "property.amount": "0"}, []),
    ):
        found = names(get(data, events, key, type="track", **params))
        assert [u for _, u in found] == expected, params


def test_cursor_paging_newest_first(data: System) -> None:
    admin = token(data)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "product": data.product.id}
        if cursor:
            params["cursor"] = cursor
        r = get(data, "/api/v1/events", admin, **params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [e["id"] for e in page["events"]]
        pages += 1
        if pages == 1:  # events stored meanwhile do not shift the pages that follow
            send(data, "/v1/track", userId="u9", event="Later")
            data.work()
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = [e.id for e in data.events(data.product.id) if e.name != "Later"]
    assert seen == everything and len(seen) == len(set(seen))
    bad = get(data, "/api/v1/events", admin, cursor="nope")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"
    assert get(data, "/api/v1/events", admin, limit="0").status_code == 400
    assert get(data, "/api/v1/events", admin, **{"from": "yesterday"}).status_code == 400
    assert get(data, "/api/v1/events", admin, type="nope").status_code == 400
    # A user filter needs a product when the credential reads every product.
    assert get(data, "/api/v1/events", admin, user="u1").status_code == 400


def test_one_event_with_its_enrichment(data: System) -> None:
    key = token(data, data.product.id)
    (bought,) = [e for e in data.events() if e.user_id == "u1" and e.name == "Bought"]
    r = get(data, f"/api/v1/events/{bought.id}", key)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["event"]["id"] == bought.id
    assert detail["event"]["properties"]["cart"] == {"size": "xl"}
    assert (
        "clock" in detail["enrichment"]
        or "ua" in detail["enrichment"]
        or detail["enrichment"] == {}
    )
    assert set(detail["enrichment"]) <= set(detail["event"]["context"])
    assert detail["envelope"] is None and "Dead letters keep theirs" in detail["envelope_note"]
    assert get(data, "/api/v1/events/nope", key).status_code == 404
    other = token(data, data.create_product("Other").id)
    assert get(data, f"/api/v1/events/{bought.id}", other).status_code == 404


def test_user_and_account_profiles(data: System) -> None:
    key = token(data, data.product.id)
    r = get(data, "/api/v1/users/anon-1", key)  # found by alias
    assert r.status_code == 200, r.text
    profile = r.json()
    assert profile["user"]["id"] == "u1"
    assert profile["user"]["attributes"]["plan"] == "pro"
    assert "anon-1" in [a["alias"] for a in profile["user"]["aliases"]]
    assert [a["id"] for a in profile["accounts"]] == ["child", "acme"]
    assert [e["name"] for e in profile["last_events"]] == ["Bought", "Home"][:2] or profile[
        "last_events"
    ]
    assert get(data, "/api/v1/users/nobody", key).status_code == 404
    r = get(data, "/api/v1/accounts/acme", key)
    assert r.status_code == 200, r.text
    acme = r.json()
    assert acme["account"]["name"] == "Acme" and acme["parents"] == []
    assert [c["id"] for c in acme["children"]] == ["child"]
    assert acme["users"] == ["u2"]
    assert {e["user_id"] for e in acme["last_events"] if e["type"] == "track"} == {"u1", "u2"}
    child = get(data, "/api/v1/accounts/child", key).json()
    assert [p["id"] for p in child["parents"]] == ["acme"] and child["users"] == ["u1"]
    admin = token(data)
    assert get(data, "/api/v1/accounts/acme", admin).status_code == 400  # which product?
    assert get(data, "/api/v1/accounts/acme", admin, product=data.product.id).status_code == 200


def test_dead_letters_listed_and_replayed(system: System) -> None:
    other = system.create_product("Other")
    good = {
        "v": 1,
        "id": "0192f000-0000-7000-8000-000000000001",
        "dialect": "native",
        "kind": "track",
        "product_id": system.product.id,
        "received_at": "2026-11-30T10:00:00Z",
        "body": {"type": "track", "event": "Replayed", "userId": "u1"},
    }
    with system.engine.begin() as conn:
        write_dead_letters(
            conn,
            [
                DeadLetter("internal", "a bug, since fixed", good, product_id=system.product.id),
                DeadLetter("schema", "theirs", {"v": 1}, product_id=other.id),
            ],
            datetime.now(UTC),
        )
    mine, admin = token(system, system.product.id), token(system)
    r = get(system, "/api/v1/deadletters", mine)
    assert r.status_code == 200, r.text
    (letter,) = r.json()["dead_letters"]
    assert letter["reason"] == "internal" and letter["detail"] == "a bug, since fixed"
    assert len(get(system, "/api/v1/deadletters", admin).json()["dead_letters"]) == 2
    assert (
        system.client.post(f"/api/v1/deadletters/{letter['id']}/replay", headers=bearer(mine))
    ).status_code == 403
    r = system.client.post(f"/api/v1/deadletters/{letter['id']}/replay", headers=bearer(admin))
    assert r.status_code == 202, r.text
    assert r.json() == {"replayed": 1, "ids": [letter["id"]]}
    assert system.queued_jobs() == 1
    system.work()
    assert [e.name for e in system.events()] == ["Replayed"]
    assert get(system, "/api/v1/deadletters", mine).json()["dead_letters"] == []
    assert len(get(system, "/api/v1/deadletters", mine, all="true").json()["dead_letters"]) == 1
    # Replay all: the other product's letter goes back to the worker (and dies again).
    r = system.client.post("/api/v1/deadletters/replay", headers=bearer(admin))
    assert r.status_code == 202 and r.json()["replayed"] == 1
    system.work()
    assert (
        system.client.post("/api/v1/deadletters/999/replay", headers=bearer(admin)).status_code
        == 404
    )


def test_lists_of_users_and_accounts(data: System) -> None:
    key = token(data, data.product.id)
    r = get(data, "/api/v1/users", key, limit=2)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [u["id"] for u in first["users"]] == ["u3", "u2"]
    rest = get(data, "/api/v1/users", key, cursor=first["next_cursor"]).json()
    assert [u["id"] for u in rest["users"]] == ["u1"] and rest["next_cursor"] is None
    assert rest["users"][0]["attributes"] == {"plan": "pro"}
    assert [u["id"] for u in get(data, "/api/v1/users", key, q="u1").json()["users"]] == ["u1"]
    assert get(data, "/api/v1/users", key, q="%").json()["users"] == []  # no wildcards
    accounts = get(data, "/api/v1/accounts", key).json()["accounts"]
    assert {a["id"]: a["parent_id"] for a in accounts} == {"child": "acme", "acme": None}
    assert [a["id"] for a in get(data, "/api/v1/accounts", key, q="Ac").json()["accounts"]] == [
        "acme"
    ]
    assert get(data, "/api/v1/users", key, cursor="x").status_code == 400


def test_server_keys_only_for_an_admin(system: System) -> None:
    path = f"/api/v1/products/{system.product.id}/keys"
    assert get(system, path, token(system, system.product.id)).status_code == 403
    r = get(system, path, token(system))
    assert r.status_code == 200
    assert r.json()["server_keys"] == [system.server_key]
    assert system.server_key not in get(system, "/api/v1/products", token(system)).text
    assert get(system, "/api/v1/products/nope/keys", token(system)).status_code == 404
