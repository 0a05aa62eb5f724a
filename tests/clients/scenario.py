"""The calls every SDK test makes, and what the store must hold afterwards.

Each SDK sends, with its own API, the same script for one user:

1. ``identify`` with traits (email, plan, seats);
2. ``track`` "Order Completed" with properties, a fixed timestamp and a messageId,
   then the same message again (deduplicated);
3. ``page`` "Pricing" (and ``screen`` "Home" where the SDK has it);
4. ``group`` into account ``acme-<sdk>`` with traits (name, employees);
5. ``alias`` from ``old-<sdk>``.

:func:`check_stored` reads the store: the events (type, name, ids, properties, traits,
timestamps, one event per messageId), the user (email, attributes, account), the
account and the alias.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sightline.model import Event
from sightline.store.schema import accounts, aliases, user_attributes, users
from tests.browser.live import LiveCollector

TIMESTAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TRAITS = {"email": "ada@example.com", "plan": "pro", "seats": 3}
PROPERTIES = {"revenue": 42.5, "currency": "EUR"}
PAGE_PROPERTIES = {"path": "/pricing"}
GROUP_TRAITS = {"name": "Acme", "employees": 50}


@dataclass(frozen=True)
class Script:
    """The ids one SDK's run uses (so two SDKs never share a user or a messageId)."""

    sdk: str

    @property
    def user_id(self) -> str:
        return f"user-{self.sdk}"

    @property
    def message_id(self) -> str:
        return f"order-{self.sdk}-1"

    @property
    def group_id(self) -> str:
        return f"acme-{self.sdk}"

    @property
    def previous_id(self) -> str:
        return f"old-{self.sdk}"


def wait_for_events(
    live: LiveCollector, count: int, pause: Callable[[], None], timeout: float = 15.0
) -> list[Event]:
    """The product's stored events once there are ``count`` (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        events = live.events()
        if len(events) >= count or time.monotonic() > deadline:
            return events
        pause()


def _sleep() -> None:
    time.sleep(0.1)


def check_stored(
    live: LiveCollector,
    script: Script,
    *,
    screen: bool = True,
    anonymous_id: str | None = None,
    pause: Callable[[], None] = _sleep,
    anonymous_events: tuple[str, ...] = (),
    own_message_id: bool = True,
    server_key: bool = False,
) -> dict[str, Event]:
    """Asserts what the store holds after ``script`` ran; returns the events by type.

    ``server_key``: the SDK sent with the server key (a server SDK), so the e-mail trait
    is the user's e-mail; a write key's stays an attribute only (the write-key policy).

    ``anonymous_events``: track events sent before identify (anonymous);
    ``own_message_id``: false for an SDK that does not let a caller set ``messageId``.

    ``pause`` waits a little between looks at the store: a browser test passes one that
    lets Playwright serve the page's routed requests meanwhile.
    """
    expected = (6 if screen else 5) + len(anonymous_events)
    events = wait_for_events(live, expected, pause)
    before = [e for e in events if e.name in anonymous_events]
    assert sorted(e.name for e in before) == sorted(anonymous_events)
    for event in before:  # sent before identify: anonymous (an empty userId is absent)
        assert (event.user_id, event.anonymous_id) == (None, anonymous_id)
    events = [e for e in events if e.name not in anonymous_events]
    by_type: dict[str, list[Event]] = {}
    for event in events:
        by_type.setdefault(event.type.value, []).append(event)
    types = sorted(by_type)
    assert types == sorted(
        ["identify", "track", "page", "group", "alias", *(["screen"] if screen else [])]
    ), types
    assert {t: len(v) for t, v in by_type.items()} == dict.fromkeys(by_type, 1), "deduplicated"
    assert all(e.user_id == script.user_id for e in events)

    [track] = by_type["track"]
    assert track.name == "Order Completed"
    if own_message_id:  # the SDK lets a caller set messageId
        assert track.message_id == script.message_id
    assert track.properties == PROPERTIES
    # The client's time is kept; the stored one is corrected by the client's clock skew
    # (sentAt against our clock), which for a client on this machine is a transit time.
    assert track.original_timestamp == TIMESTAMP
    assert abs(track.timestamp - TIMESTAMP) < timedelta(seconds=5)
    assert track.received_at > TIMESTAMP

    [identify] = by_type["identify"]
    assert identify.name == "identify"
    assert _subset(TRAITS, identify.properties)
    if anonymous_id is not None:
        assert identify.anonymous_id == anonymous_id

    [page] = by_type["page"]
    assert page.name == "Pricing"
    assert _subset(PAGE_PROPERTIES, page.properties)
    if screen:
        assert by_type["screen"][0].name == "Home"

    [group] = by_type["group"]
    assert group.account_id == script.group_id
    assert _subset(GROUP_TRAITS, group.properties)
    [alias] = by_type["alias"]
    assert alias.properties == {"previousId": script.previous_id}

    with live.engine.connect() as conn:
        product = live.product.id
        [user] = conn.execute(
            sa.select(users).where(
                users.c.product_id == product, users.c.external_id == script.user_id
            )
        ).all()
        attributes = {
            r.name: r.value
            for r in conn.execute(
                sa.select(user_attributes).where(user_attributes.c.user_id == user.id)
            )
        }
        [account] = conn.execute(
            sa.select(accounts).where(
                accounts.c.product_id == product, accounts.c.external_id == script.group_id
            )
        ).all()
        linked = {
            r.alias: r.kind
            for r in conn.execute(
                sa.select(aliases).where(
                    aliases.c.product_id == product, aliases.c.user_id == user.id
                )
            )
        }
    assert user.email == (TRAITS["email"] if server_key else None)
    assert _subset({"plan": "pro", "seats": 3, "email": TRAITS["email"]}, attributes)
    assert user.account_id == account.id
    assert account.name == "Acme"
    assert _subset(GROUP_TRAITS, account.traits)
    assert linked.get(script.previous_id) == "alias"
    if anonymous_id is not None:
        assert linked.get(anonymous_id) == "anonymous"
    return {t: v[0] for t, v in by_type.items()}


def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    return all(actual.get(k) == v for k, v in expected.items())
