"""Identity stitching across login and aliases; account trees at any depth (both databases)."""

from __future__ import annotations

from typing import Any

from sightline.store.identity import account_ids, events_of_account, events_of_user
from tests.harness import System


def send(system: System, kind: str, message_id: str, **body: Any) -> None:
    body = {"messageId": message_id} | body
    # Account parents are server-only (the write-key policy): group calls use the server key.
    key = system.server_key if kind == "group" else None
    response = system.send(f"/v1/{kind}", body, key=key)
    assert response.status_code == 200, response.text


def names_of_user(system: System, user: str) -> list[str]:
    with system.engine.connect() as conn:
        return [e.message_id for e in events_of_user(conn, system.product.id, user)]


def names_of_account(system: System, account: str) -> list[str]:
    with system.engine.connect() as conn:
        return sorted(e.message_id for e in events_of_account(conn, system.product.id, account))


def t(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}Z"


def test_anonymous_events_join_the_user_on_identify(system: System) -> None:
    send(system, "page", "before-1", anonymousId="anon-1", timestamp=t(1))
    send(system, "track", "before-2", anonymousId="anon-1", event="Cart", timestamp=t(2))
    send(system, "identify", "login", userId="u1", anonymousId="anon-1", timestamp=t(3))
    send(system, "track", "after", userId="u1", event="Bought", timestamp=t(4))
    # Later, another person logs in on the same browser: their events stay theirs.
    send(system, "track", "other", userId="u2", anonymousId="anon-1", event="X", timestamp=t(5))
    send(system, "page", "stranger", anonymousId="anon-9", timestamp=t(6))
    system.work()
    assert names_of_user(system, "u1") == ["before-1", "before-2", "login", "after"]
    assert names_of_user(system, "u2") == ["other"]


def test_aliases_and_chains_of_them(system: System) -> None:
    send(system, "page", "anon-view", anonymousId="device-7", timestamp=t(1))
    send(system, "identify", "old-login", userId="old-id", anonymousId="device-7", timestamp=t(2))
    send(system, "track", "old-track", userId="old-id", event="E", timestamp=t(3))
    # Segment alias: old-id is now known as new-id.
    send(system, "alias", "merge", userId="new-id", previousId="old-id", timestamp=t(4))
    send(system, "track", "new-track", userId="new-id", event="E", timestamp=t(5))
    system.work()
    assert names_of_user(system, "new-id") == [
        "anon-view",
        "old-login",
        "old-track",
        "merge",
        "new-track",
    ]


def test_account_includes_sub_accounts_at_any_depth(system: System) -> None:
    # Acme > Acme Retail > Acme Retail EU; Globex on its own.
    send(system, "group", "g-acme", userId="ceo", groupId="acme", traits={"name": "Acme"})
    send(system, "group", "g-retail", userId="buyer", groupId="retail", traits={"parentId": "acme"})
    send(
        system, "group", "g-eu", userId="clerk", groupId="retail-eu", traits={"parentId": "retail"}
    )
    send(system, "group", "g-globex", userId="rival", groupId="globex")
    system.work()
    send(system, "page", "clerk-anon", anonymousId="clerk-device")
    send(system, "identify", "clerk-login", userId="clerk", anonymousId="clerk-device")
    send(system, "track", "clerk-track", userId="clerk", event="E")
    send(system, "track", "eu-server", userId="svc", event="E", context={"groupId": "retail-eu"})
    send(system, "track", "rival-track", userId="rival", event="E")
    system.work()
    with system.engine.connect() as conn:
        assert account_ids(conn, system.product.id, "acme") == ["acme", "retail", "retail-eu"]
        assert account_ids(conn, system.product.id, "retail-eu") == ["retail-eu"]
    eu = ["clerk-anon", "clerk-login", "clerk-track", "eu-server", "g-eu"]
    assert names_of_account(system, "retail-eu") == eu
    assert names_of_account(system, "retail") == sorted([*eu, "g-retail"])
    assert names_of_account(system, "acme") == sorted([*eu, "g-retail", "g-acme"])
    assert names_of_account(system, "globex") == ["g-globex", "rival-track"]
    assert names_of_account(system, "nobody") == []


def test_a_parent_cycle_is_a_dead_letter_and_the_rest_is_stored(system: System) -> None:
    send(system, "group", "g-a", userId="a", groupId="A")
    send(system, "group", "g-b", userId="b", groupId="B", traits={"parentId": "A"})
    system.work()
    send(system, "group", "g-cycle", userId="a", groupId="A", traits={"parentId": "B"})
    send(system, "track", "fine", userId="a", event="E")
    system.work()
    assert {e.message_id for e in system.events()} == {"g-a", "g-b", "fine"}
    [letter] = system.dead_letters()
    assert letter.reason == "identity"
    assert "cycle" in letter.detail
    with system.engine.connect() as conn:
        assert account_ids(conn, system.product.id, "A") == ["A", "B"]
