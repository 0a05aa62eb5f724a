"""Fuzy contract: products, an account tree, users and events, end to end, on both databases."""

from __future__ import annotations

from typing import Any

from tests.harness import System


def key(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


def test_default_product_exists_and_products_can_be_created_and_configured(
    system: System,
) -> None:
    mine = key(system.server_key)
    listed = system.client.get("/v3/product", headers=mine)
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()] == [system.product.id]

    created = system.client.post("/v3/product", json={"name": "iOS app"}, headers=mine)
    assert created.status_code == 201, created.text
    ios = created.json()
    assert ios["name"] == "iOS app" and ios["server_keys"] and ios["write_keys"]
    # Its keys work at once.
    assert system.client.get("/v3/product", headers=key(ios["server_keys"][0])).status_code == 200
    assert {p["id"] for p in system.client.get("/v3/product", headers=mine).json()} == {
        system.product.id,
        ios["id"],
    }
    changed = system.client.put(
        f"/v3/product/{ios['id']}", json={"is_enabled": False, "name": "iOS"}, headers=mine
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["is_enabled"]) == ("iOS", False)


def test_allowed_origins_are_checked_and_kept_as_browsers_send_them(system: System) -> None:
    mine = key(system.server_key)
    bad = {"allowed_origins": ["https://shop.example", "shop.example", "https://a.example/x"]}
    refused = system.client.put(f"/v3/product/{system.product.id}", json=bad, headers=mine)
    assert refused.status_code == 400
    fields = {e["field"]: e["reason"] for e in refused.json()["errors"]}
    assert set(fields) == {"allowed_origins[1]", "allowed_origins[2]"}
    assert "no path" in fields["allowed_origins[2]"]

    good = {"allowed_origins": ["https://Shop.example:443/", "chrome-extension://abcdefgh"]}
    changed = system.client.put(f"/v3/product/{system.product.id}", json=good, headers=mine)
    assert changed.status_code == 200, changed.text
    assert changed.json()["allowed_origins"] == [
        "https://shop.example",
        "chrome-extension://abcdefgh",
    ]
    # and a browser on that site is granted
    answer = system.client.options(
        "/v1/batch",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"


def test_auth(system: System) -> None:
    event = {"description": "x", "timestamp": "2024-01-01T00:00:00Z", "user_id": "u"}
    assert system.client.put("/v3/event", json=event).status_code == 401
    assert system.client.put("/v3/event", json=event, headers=key("nope")).status_code == 401
    r = system.client.put("/v3/event", json=event, headers={"X-API-Key": system.write_key})
    assert r.status_code == 403  # a public write key may not use the server API
    other = system.create_product("Someone else's")
    foreign = event | {"product": other.id}
    r = system.client.put("/v3/event", json=foreign, headers=key(system.server_key))
    assert r.status_code == 403
    r = system.client.put(
        f"/v3/product/{other.id}", json={"name": "x"}, headers=key(system.server_key)
    )
    assert r.status_code == 403
    r = system.client.put("/v3/product/nope", json={"name": "x"}, headers=key(system.server_key))
    assert r.status_code == 404
    assert system.queued_jobs() == 0


def test_invalid_input_is_400_naming_the_fields(system: System) -> None:
    bad: list[Any] = [
        {"timestamp": "2024-01-01T00:00:00Z", "user_id": "u"},
        {"description": "x", "timestamp": "soon", "user_id": "u"},
        {"description": "x", "timestamp": "2024-01-01T00:00:00Z"},
    ]
    r = system.client.put("/v3/event", json=bad, headers=key(system.server_key))
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == [
        "[0].description",
        "[1].timestamp",
        "[2].user",
    ]


def test_account_tree_users_and_events(system: System) -> None:
    headers = key(system.server_key)
    accounts = [
        {"id": "acme", "name": "Acme Corp", "payment_ids": {"stripe": "cus_acme"}},
        {"id": "acme-retail", "name": "Acme Retail", "parent_id": "acme"},
        {
            "id": "acme-retail-eu",
            "name": "Acme Retail EU",
            "parent": {"id": "acme-retail", "parent_id": "acme"},
        },
    ]
    assert system.client.put("/v3/account", json=accounts, headers=headers).status_code == 202
    user = {"id": "ann", "email": "ann@acme.test", "account_id": "acme-retail-eu", "name": "Ann"}
    assert system.client.post("/v3/user", json=user, headers=headers).status_code == 202
    # A fully populated user object in an event: the user and the account are created too.
    event = {
        "description": "Viewed dashboard",
        "timestamp": "2024-03-01T12:00:00Z",
        "type": "page_view",
        "id": "evt-1",
        "user": {
            "id": "bob",
            "account": {
                "id": "globex",
                "name": "Globex",
                "parent": {"id": "globex-holding", "name": "Globex Holding"},
                "payment_ids": {"chargebee": "cb_1"},
            },
            "payment_ids": {"stripe": "cus_bob"},
        },
        "properties": {"tab": "usage"},
        "context": {"path": "/dashboard"},
    }
    assert system.client.put("/v3/event", json=event, headers=headers).status_code == 202
    assert system.client.put("/v3/event", json=event, headers=headers).status_code == 202
    system.work()

    eu = system.client.get("/v3/account/acme-retail-eu", headers=headers).json()
    assert (eu["name"], eu["parent_id"]) == ("Acme Retail EU", "acme-retail")
    retail = system.client.get("/v3/account/acme-retail", headers=headers).json()
    assert retail["parent_id"] == "acme"
    acme = system.client.get("/v3/account/acme", headers=headers).json()
    assert acme["payment_ids"] == {"stripe": "cus_acme"} and acme["parent_id"] is None
    globex = system.client.get("/v3/account/globex", headers=headers).json()
    assert globex["parent_id"] == "globex-holding"
    assert globex["payment_ids"] == {"chargebee": "cb_1"}
    listed = system.client.get("/v3/account", headers=headers).json()
    assert {a["id"] for a in listed} == {
        "acme", "acme-retail", "acme-retail-eu", "globex", "globex-holding",
    }  # fmt: skip

    ann = system.client.get("/v3/user/ann", headers=headers).json()
    assert (ann["account_id"], ann["email"], ann["attributes"]["name"]) == (
        "acme-retail-eu",
        "ann@acme.test",
        "Ann",
    )
    bob = system.client.get("/v3/user/bob", headers=headers).json()
    assert (bob["account_id"], bob["payment_ids"]) == ("globex", {"stripe": "cus_bob"})
    assert system.client.get("/v3/user/nobody", headers=headers).status_code == 404

    viewed = [e for e in system.events() if e.name == "Viewed dashboard"]
    assert len(viewed) == 1  # the retry with the same id stored nothing twice
    (stored,) = viewed
    assert (stored.user_id, stored.account_id, stored.type.value) == ("bob", "globex", "page")
    assert stored.context["page"] == {"path": "/dashboard"}
    assert stored.properties == {"tab": "usage"}
