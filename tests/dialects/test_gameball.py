"""Gameball contract: bodies built from the page's remarks and usage examples, end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from sightline.store.schema import products, users
from tests.harness import System

# Example one: "player123" places an order (two metadata keys) and reviews (none).
EXAMPLE_ONE: dict[str, Any] = {
    "playerUniqueId": "player123",
    "events": {
        "place_order": {"total_amount": 100, "category": ["electronics", "fashion"]},
        "review": {},
    },
}
# Example two: reserve two rooms, one standard (1) and one deluxe (2).
EXAMPLE_TWO: dict[str, Any] = {
    "playerUniqueId": "player456",
    "events": {"reserve": {"rooms": [1, 2]}},
}
# Example three: the same with channel merging (mobile / email sent along).
EXAMPLE_THREE: dict[str, Any] = EXAMPLE_TWO | {
    "playerUniqueId": "player789",
    "mobile": "+201234567890",
    "email": "jane@example.com",
}


def send(system: System, body: dict[str, Any] | bytes, key: str | None = None) -> Any:
    headers = {"APIKey": key or system.write_key, "Content-Type": "application/json"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return system.client.post("/integrations/event", content=content, headers=headers)


def set_product(system: System, **values: Any) -> None:
    with system.engine.begin() as conn:
        conn.execute(sa.update(products).where(products.c.id == system.product.id).values(**values))


def test_examples_one_and_two(system: System) -> None:
    assert send(system, EXAMPLE_ONE).status_code == 200
    assert send(system, EXAMPLE_TWO).status_code == 200
    system.work()
    stored = {(e.user_id, e.name): e for e in system.events()}
    assert set(stored) == {
        ("player123", "place_order"),
        ("player123", "review"),
        ("player456", "reserve"),
    }
    assert stored[("player123", "place_order")].properties == {
        "total_amount": 100,
        "category": ["electronics", "fashion"],
    }
    assert stored[("player123", "review")].properties == {}
    created = {r.external_id for r in system.sql(sa.select(users.c.external_id))}
    assert created == {"player123", "player456"}  # unknown players are created


def test_the_same_call_again_within_a_minute_stores_nothing_twice(system: System) -> None:
    """Gameball sends no message id: a client's retry (same content, same minute) is the
    same events; content ids: ``sightline.dialects.dedup``."""
    send(system, EXAMPLE_ONE)
    system.work()
    send(system, EXAMPLE_ONE)
    system.work()
    assert len(system.events()) == 2


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(
            b'{"playerUniqueId": "p", "events": {"buy": {}, "buy": {"price": 3}}}',
            "events.buy",
            id="event-name",
        ),
        pytest.param(
            b'{"playerUniqueId": "p", "events": {"buy": {"price": 3, "price": 4}}}',
            "events.buy.price",
            id="metadata-key",
        ),
    ],
)
def test_a_repeated_name_is_a_400_naming_it(system: System, text: bytes, field: str) -> None:
    r = send(system, text)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert system.queued_jobs() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"events": {"buy": {}}}, "playerUniqueId", id="no-player"),
        pytest.param({"playerUniqueId": "p"}, "events", id="no-events"),
        pytest.param(
            {"playerUniqueId": "p", "events": {"b": {"k": None}}}, "events.b.k", id="null"
        ),
        pytest.param(
            {"playerUniqueId": "p", "events": {"b": {"k": {"x": 1}}}}, "events.b.k", id="object"
        ),
        pytest.param(
            {"playerUniqueId": "p", "events": {"b": {"k": [[1]]}}}, "events.b.k[0]", id="nested"
        ),
        pytest.param(
            {"playerUniqueId": "p", "events": {"b": {}}, "email": "x"}, "email", id="email"
        ),
    ],
)
def test_invalid_bodies_are_400(system: System, body: dict[str, Any], field: str) -> None:
    r = send(system, body)
    assert r.status_code == 400
    assert field in [e["field"] for e in r.json()["errors"]]


def test_metadata_values_are_numbers_strings_booleans_and_arrays_of_them(system: System) -> None:
    metadata = {
        "rooms": [1, 2],
        "price": 30.5,
        "gift": True,
        "product_tags": "men & new_collection",
        "mixed": ["a", 1, 2.5, False],
    }
    r = send(system, {"playerUniqueId": "p1", "events": {"reserve": metadata}})
    assert r.status_code == 200, r.text
    system.work()
    (stored,) = system.events()
    assert stored.properties == metadata


def test_a_call_with_no_events_creates_the_player(system: System) -> None:
    call = {"playerUniqueId": "p-new", "email": "new@example.com", "events": {}}
    # From a server: e-mail and mobile are server-only (the write-key policy).
    assert send(system, call, key=system.server_key).status_code == 200
    system.work()
    (stored,) = system.events()
    assert (stored.name, stored.type.value, stored.user_id) == ("identify", "identify", "p-new")
    (player,) = system.sql(sa.select(users.c.external_id, users.c.email))
    assert tuple(player) == ("p-new", "new@example.com")


def test_unknown_key_is_401(system: System) -> None:
    assert send(system, EXAMPLE_ONE, key="nope").status_code == 401


def test_channel_merging_links_the_player_to_the_existing_user(system: System) -> None:
    set_product(system, channel_merging=True)
    # The server knows her e-mail (a write key cannot set one: the write-key policy).
    jane = {"userId": "jane", "traits": {"email": "jane@example.com"}}
    system.send("/v1/identify", jane, key=system.server_key)
    system.work()
    _reload(system)
    assert send(system, EXAMPLE_THREE).status_code == 200
    system.work()
    reserve = next(e for e in system.events() if e.name == "reserve")
    assert reserve.user_id == "jane"
    ids = {r.external_id for r in system.sql(sa.select(users.c.external_id))}
    assert "player789" not in ids
    # The player id now finds the same user, so a later call without e-mail does too.
    send(system, {"playerUniqueId": "player789", "events": {"checkout": {}}})
    system.work()
    checkout = next(e for e in system.events() if e.name == "checkout")
    assert checkout.user_id == "jane"


def test_without_channel_merging_the_player_stays_its_own_user(system: System) -> None:
    system.send("/v1/identify", {"userId": "jane", "traits": {"email": "jane@example.com"}})
    system.work()
    send(system, EXAMPLE_THREE)
    system.work()
    reserve = next(e for e in system.events() if e.name == "reserve")
    assert reserve.user_id == "player789"


def test_events_while_disabled_are_stored_but_unused(system: System) -> None:
    set_product(system, is_enabled=False)
    _reload(system)
    assert send(system, EXAMPLE_ONE).status_code == 200
    system.work()
    stored = system.events()
    assert len(stored) == 2
    assert all(e.is_unused for e in stored)


def _reload(system: System) -> None:
    """Make the collector and the worker see a product setting changed behind their back."""
    portal = system.client.portal
    assert portal is not None
    portal.call(system.client.app_state["directory"].reload)
