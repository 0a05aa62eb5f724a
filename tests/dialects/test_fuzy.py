"""Fuzy contract: products, an account tree, users and events, end to end, on both databases.

Events are replayed byte for byte as Fuzy's own clients send them. fuzy-js
(github.com/fuzy-ai/fuzy-js, ``fuzy-api.js``; not on npm, installed from GitHub, so
not installable in this suite) does::

    fetch(`https://api.fuzy.ai/v3/event`, {method: 'PUT', headers: {
        "Content-Type": "application/json", "x-api-key": process.env.REACT_APP_FUZY_AI_API_TOKEN},
      body: JSON.stringify({eventType, timestamp: (new Date()).toISOString(),
        user: {userId, accountId, billingAccountId,
               paymentProcessorCustomerId: user.paymentProcessorSubscriptionId,  // sic
               paymentProcessorSubscriptionId},
        product: productId, metadata, sessionId, tags,
        eventId: eventId.length ? eventId : uuidv4()})})

with ``metadata = {}``, ``tags = []`` and ``eventId = productId = sessionId = ""`` by
default; JSON.stringify leaves out undefined user fields. Fuzy's sample React app
(github.com/fuzy-ai/sample-react-app, ``src/fuzy-api.js``) sends
``{eventType, timestamp, eventId: uuidv4(), user: {userId}}`` with the route's path
as ``eventType``. The bodies below are those JSON.stringify outputs.
"""

from __future__ import annotations

from typing import Any

from sightline.store.products import add_identifier
from tests.harness import System

# sendEvent("Plan upgraded", {userId, accountId, billingAccountId, paymentProcessorCustomerId,
# paymentProcessorSubscriptionId}, {plan: "pro", seats: 5}, ["beta", "eu"], "", "", "s-77")
SDK_FULL = (
    b'{"eventType":"Plan upgraded","timestamp":"2024-03-01T12:00:00.123Z",'
    b'"user":{"userId":"u-42","accountId":"acme","billingAccountId":"ba-9",'
    b'"paymentProcessorCustomerId":"sub_123","paymentProcessorSubscriptionId":"sub_123"},'
    b'"product":"","metadata":{"plan":"pro","seats":5},"sessionId":"s-77",'
    b'"tags":["beta","eu"],"eventId":"0b9e8d1c-6f5a-4e2b-9c3d-7a1b2c3d4e5f"}'
)
# sendEvent("page_view", {userId: "u-1"}): every default.
SDK_DEFAULTS = (
    b'{"eventType":"page_view","timestamp":"2024-03-01T12:00:01.000Z","user":{"userId":"u-1"},'
    b'"product":"","metadata":{},"sessionId":"","tags":[],'
    b'"eventId":"5f0c6d2e-8a41-4b7f-b3a9-2e6d1c0f9a88"}'
)
# The sample app's HomeRoute: sendAnalyticsEvent(userId, "/home").
SAMPLE_APP = (
    b'{"eventType":"/home","timestamp":"2024-03-01T12:00:02.500Z",'
    b'"eventId":"c3a1f7e2-1d4b-4c8e-9f60-5b2a7d9e0c14","user":{"userId":"u-7"}}'
)


def key(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


def fuzy_js(system: System, body: bytes, token: str | None = None, **headers: str) -> Any:
    """The request fuzy-js makes: PUT, its two headers, the JSON.stringify body."""
    sent = {"Content-Type": "application/json", "x-api-key": token or system.write_key}
    return system.client.put("/v3/event", content=body, headers=sent | headers)


def test_fuzy_js_event_is_stored_with_every_field(system: System) -> None:
    # fuzy-js on a server (the server key): its payment ids are the user's too.
    first = fuzy_js(system, SDK_FULL, system.server_key)
    assert first.status_code == 202, first.text
    assert first.json() == {"success": True, "accepted": 1}
    # the SDK retried: same eventId
    assert fuzy_js(system, SDK_FULL, system.server_key).status_code == 202
    system.work()
    (event,) = [e for e in system.events() if e.dialect == "fuzy"]
    assert (event.name, event.type.value) == ("Plan upgraded", "track")
    assert event.message_id == "0b9e8d1c-6f5a-4e2b-9c3d-7a1b2c3d4e5f"
    assert (event.user_id, event.account_id, event.session_id) == ("u-42", "acme", "s-77")
    assert event.product_id == system.product.id
    assert event.properties == {"plan": "pro", "seats": 5, "tags": ["beta", "eu"]}
    assert event.timestamp.isoformat() == "2024-03-01T12:00:00.123000+00:00"
    assert not event.is_unused
    user = system.client.get("/v3/user/u-42", headers=key(system.server_key)).json()
    assert user["account_id"] == "acme"
    assert user["payment_ids"] == {
        "billingAccountId": "ba-9",
        "paymentProcessorCustomerId": "sub_123",
        "paymentProcessorSubscriptionId": "sub_123",
    }
    assert system.client.get("/v3/account/acme", headers=key(system.server_key)).status_code == 200


def test_fuzy_js_defaults_and_the_sample_app(system: System) -> None:
    assert fuzy_js(system, SDK_DEFAULTS).status_code == 202
    assert fuzy_js(system, SAMPLE_APP).status_code == 202
    system.work()
    stored = {e.user_id: e for e in system.events() if e.dialect == "fuzy"}
    page_view, home = stored["u-1"], stored["u-7"]
    assert (page_view.name, page_view.type.value, page_view.properties) == ("page_view", "page", {})
    assert page_view.message_id == "5f0c6d2e-8a41-4b7f-b3a9-2e6d1c0f9a88"
    # "" is absent: no account, and no client session (the store may assign its own)
    assert page_view.account_id is None and page_view.session_id != ""
    assert (home.name, home.type.value) == ("/home", "page")
    assert home.context["page"] == {"path": "/home"}
    assert home.message_id == "c3a1f7e2-1d4b-4c8e-9f60-5b2a7d9e0c14"


def test_the_browser_token_is_a_write_key_and_origins_apply(system: System) -> None:
    site = "https://app.example"
    changed = system.client.put(
        f"/v3/product/{system.product.id}",
        json={"allowed_origins": [site]},
        headers=key(system.server_key),
    )
    assert changed.status_code == 200
    preflight = system.client.options(
        "/v3/event",
        headers={
            "Origin": site,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )
    assert preflight.status_code == 204
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    sent = fuzy_js(system, SAMPLE_APP, Origin=site)
    assert sent.status_code == 202, sent.text
    assert sent.headers["access-control-allow-origin"] == site
    assert fuzy_js(system, SAMPLE_APP, Origin="https://elsewhere.example").status_code == 403
    # a server sends with the server key (no Origin), as before
    assert fuzy_js(system, SDK_DEFAULTS, token=system.server_key).status_code == 202
    # the write key only sends events: products, accounts and users stay server-key
    write = {"x-api-key": system.write_key}
    assert system.client.get("/v3/product", headers=write).status_code == 403
    assert system.client.put("/v3/user", json={"id": "u"}, headers=write).status_code == 403
    assert system.client.put("/v3/account", json={"id": "a"}, headers=write).status_code == 403
    assert system.client.get("/v3/user", headers=write).status_code == 403


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
    assert system.client.put("/v3/event", content=SDK_DEFAULTS).status_code == 401
    assert fuzy_js(system, SDK_DEFAULTS, token="nope").status_code == 401
    other = system.create_product("Someone else's")
    foreign = SDK_DEFAULTS.replace(b'"product":""', f'"product":"{other.id}"'.encode())
    refused = fuzy_js(system, foreign)
    assert refused.status_code == 403
    assert [e["field"] for e in refused.json()["errors"]] == ["product"]
    own = SDK_DEFAULTS.replace(b'"product":""', f'"product":"{system.product.id}"'.encode())
    assert fuzy_js(system, own).status_code == 202
    # An integration that passes Fuzy's own product id keeps it, once the product registers it.
    fuzys = SDK_DEFAULTS.replace(b'"product":""', b'"product":"fz-prod-7"')
    assert fuzy_js(system, fuzys).status_code == 403
    with system.engine.begin() as conn:
        add_identifier(conn, system.product.id, "fuzy", "fz-prod-7")
    portal = system.client.portal
    assert portal is not None
    portal.call(system.client.app_state["directory"].reload)
    assert fuzy_js(system, fuzys).status_code == 202
    r = system.client.put(
        f"/v3/product/{other.id}", json={"name": "x"}, headers=key(system.server_key)
    )
    assert r.status_code == 403
    r = system.client.put("/v3/product/nope", json={"name": "x"}, headers=key(system.server_key))
    assert r.status_code == 404
    assert system.queued_jobs() == 2


def test_invalid_input_is_400_naming_every_field(system: System) -> None:
    bad: list[Any] = [
        # three bad fields in one item: all three named
        {"eventType": "", "timestamp": "soon", "user": {"userId": ["u"]}},
        {"eventType": "x", "timestamp": "2024-01-01T00:00:00Z"},
        {"eventType": "x", "timestamp": "2024-01-01T00:00:00Z", "user": {"userId": ""}},
        {"timestamp": "2024-01-01T00:00:00Z", "user": {"userId": "u"}, "tags": [{}]},
    ]
    r = system.client.put("/v3/event", json=bad, headers={"x-api-key": system.write_key})
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == [
        "[0].eventType",
        "[0].timestamp",
        "[0].user.userId",
        "[1].user",
        "[2].user.userId",
        "[3].eventType",
        "[3].tags[0]",
    ]
    # one event, not a list: the same, without the index
    one = {"eventType": 5, "timestamp": "2024-13-01T00:00:00Z", "user": {"accountId": {}}}
    r = system.client.put("/v3/event", json=one, headers={"x-api-key": system.write_key})
    assert [e["field"] for e in r.json()["errors"]] == ["eventType", "timestamp", "user.accountId"]
    # accounts and users are checked field by field too
    account = {"id": "", "name": 3, "parent_id": ""}
    r = system.client.put("/v3/account", json=account, headers=key(system.server_key))
    assert [e["field"] for e in r.json()["errors"]] == ["id", "name", "parent_id"]
    assert system.queued_jobs() == 0


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
        {
            "id": "globex",
            "name": "Globex",
            "parent": {"id": "globex-holding", "name": "Globex Holding"},
            "payment_ids": {"chargebee": "cb_1"},
        },
    ]
    assert system.client.put("/v3/account", json=accounts, headers=headers).status_code == 202
    user = {"id": "ann", "email": "ann@acme.test", "account_id": "acme-retail-eu", "name": "Ann"}
    assert system.client.post("/v3/user", json=user, headers=headers).status_code == 202
    # A fully populated SDK user object from a page (the write key): the user joins the
    # account; its payment ids are server-only (the write-key policy) and refused.
    event = (
        b'{"eventType":"page_view/dashboard","timestamp":"2024-03-01T12:00:00.000Z",'
        b'"user":{"userId":"bob","accountId":"globex","paymentProcessorCustomerId":"cus_bob"},'
        b'"product":"","metadata":{"tab":"usage"},"sessionId":"","tags":[],"eventId":"evt-1"}'
    )
    assert fuzy_js(system, event).status_code == 202
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
    assert bob["account_id"] == "globex"
    assert bob["payment_ids"] == {}
    assert system.client.get("/v3/user/nobody", headers=headers).status_code == 404

    (stored,) = [e for e in system.events() if e.name == "page_view/dashboard"]
    assert (stored.user_id, stored.account_id, stored.type.value) == ("bob", "globex", "page")
    assert stored.properties == {"tab": "usage"}


def test_a_switch_applies_to_the_next_event(system: System) -> None:
    """Disable, send, enable, send, at once: the first is stored unused, the second used.

    One worker stores both, after the last switch: its product cache says enabled for
    both, so the flag must come from when each event was accepted
    (``Envelope.product_enabled``), decided by the collector that took the switch.
    """
    product, server = f"/v3/product/{system.product.id}", key(system.server_key)
    off = SDK_DEFAULTS.replace(b"5f0c6d2e", b"00000001")
    on = SDK_DEFAULTS.replace(b"5f0c6d2e", b"00000002")
    assert system.client.put(product, json={"is_enabled": False}, headers=server).status_code == 200
    assert fuzy_js(system, off).status_code == 202
    assert system.client.put(product, json={"is_enabled": True}, headers=server).status_code == 200
    assert fuzy_js(system, on).status_code == 202
    system.work()
    unused = {e.message_id[:8]: e.is_unused for e in system.events()}
    assert unused == {"00000001": True, "00000002": False}
