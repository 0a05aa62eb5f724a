"""The write-key policy (issue 14, finding 8): the public write key rewrote what a server
created. ``/v1/identify`` changed a server-created user's e-mail to the attacker's;
``/v1/group`` with ``traits.parentId`` renamed and re-parented a server-created account.

Each attack is sent to the real collector (real Redis, a burst worker, SQLite and
PostgreSQL): the event is stored, the change is not, and it is counted. A product set
to ``open`` (``sightline products policy ID --client-identity open``) gets the old
behaviour back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sightline.cli import main
from sightline.envelope import Envelope
from sightline.ids import uuid7
from sightline.model import KeyKind
from sightline.queue import JOB_FUNCTION, make_queue
from sightline.store.identity import events_of_user
from sightline.store.schema import accounts, aliases, user_attributes, users
from tests.harness import System, basic

SERVER_EMAIL = "ann@corp.example"
ATTACKER_EMAIL = "mallory@evil.example"


def send(system: System, kind: str, message_id: str, key: str | None = None, **body: Any) -> None:
    response = system.send(f"/v1/{kind}", {"messageId": message_id} | body, key=key)
    assert response.status_code == 200, response.text


def user(system: System, external_id: str) -> dict[str, Any]:
    parent = accounts.alias("account")
    (row,) = system.sql(
        sa.select(users.c.email, users.c.mobile, users.c.server_owned, parent.c.external_id)
        .outerjoin(parent, parent.c.id == users.c.account_id)
        .where(users.c.product_id == system.product.id, users.c.external_id == external_id)
    )
    email, mobile, owned, account = row
    return {"email": email, "mobile": mobile, "server_owned": owned, "account": account}


def attributes(system: System, external_id: str) -> dict[str, tuple[Any, bool]]:
    """name -> (value, set by a server key)."""
    rows = system.sql(
        sa.select(user_attributes.c.name, user_attributes.c.value, user_attributes.c.server_set)
        .join(users, users.c.id == user_attributes.c.user_id)
        .where(users.c.product_id == system.product.id, users.c.external_id == external_id)
    )
    return {name: (value, server_set) for name, value, server_set in rows}


def account(system: System, external_id: str) -> dict[str, Any] | None:
    parent = accounts.alias("parent")
    found = system.sql(
        sa.select(accounts.c.name, accounts.c.traits, accounts.c.server_owned, parent.c.external_id)
        .outerjoin(parent, parent.c.id == accounts.c.parent_id)
        .where(accounts.c.product_id == system.product.id, accounts.c.external_id == external_id)
    )
    if not found:
        return None
    name, traits, owned, parent_id = found[0]
    return {"name": name, "traits": traits, "server_owned": owned, "parent": parent_id}


def stored(system: System) -> set[str]:
    return {e.message_id for e in system.events()}


def refused(system: System) -> int:
    """The workers' ``refused_changes`` counter (Redis; ``sightline up``'s status)."""
    return system.status().refused_changes


def cli(system: System, *args: str) -> str:
    env = {
        "DATABASE_URL": system.settings.sqlalchemy_url,
        "REDIS_URL": system.settings.redis_url or "",
        "SIGHTLINE_DATA_DIR": str(system.settings.data_dir),
    }
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def server_creates_ann_and_acme(system: System) -> None:
    """What a server did first: a user with an e-mail and a plan, in an account it named."""
    key = system.server_key
    traits = {"email": SERVER_EMAIL, "plan": "enterprise"}
    send(system, "identify", "srv-ann", key, userId="ann", traits=traits)
    group_traits = {"name": "Acme Corp", "tier": "gold"}
    send(system, "group", "srv-acme", key, userId="ann", groupId="acme", traits=group_traits)
    system.work()
    assert user(system, "ann") == {
        "email": SERVER_EMAIL,
        "mobile": None,
        "server_owned": True,
        "account": "acme",
    }
    assert account(system, "acme") == {
        "name": "Acme Corp",
        "traits": group_traits,
        "server_owned": True,
        "parent": None,
    }
    assert attributes(system, "ann") == {
        "email": (SERVER_EMAIL, True),
        "plan": ("enterprise", True),
    }


def test_a_write_key_cannot_change_a_server_users_email(system: System) -> None:
    server_creates_ann_and_acme(system)
    traits = {"email": ATTACKER_EMAIL, "plan": "free", "nickname": "annie"}
    send(system, "identify", "atk-ann", userId="ann", traits=traits)
    system.work()
    # The e-mail (the column and the attribute the server set) and the plan stay; a trait
    # the server never set is the page's to set; the identify event itself is stored.
    assert user(system, "ann")["email"] == SERVER_EMAIL
    assert attributes(system, "ann") == {
        "email": (SERVER_EMAIL, True),
        "plan": ("enterprise", True),
        "nickname": ("annie", False),
    }
    assert stored(system) == {"srv-ann", "srv-acme", "atk-ann"}
    assert refused(system) == 3  # the e-mail column, the e-mail and plan attributes
    # Nor may a write key move the server's user to another account.
    send(system, "group", "atk-move", userId="ann", groupId="evil-co")
    system.work()
    assert user(system, "ann")["account"] == "acme"
    assert "atk-move" in stored(system) and refused(system) == 4


def test_a_write_key_cannot_rename_or_reparent_a_server_account(system: System) -> None:
    server_creates_ann_and_acme(system)
    traits = {"name": "Pwned", "parentId": "evil-holding", "tier": "free"}
    send(system, "group", "atk-acme", userId="mallory", groupId="acme", traits=traits)
    system.work()
    assert account(system, "acme") == {
        "name": "Acme Corp",
        "traits": {"name": "Acme Corp", "tier": "gold"},
        "server_owned": True,
        "parent": None,
    }
    assert account(system, "evil-holding") is None  # a refused parent is not even created
    assert "atk-acme" in stored(system)
    assert refused(system) == 3  # the name, the traits, the parent
    # Its own user may join the account (what its events say anyway).
    assert user(system, "mallory")["account"] == "acme"
    # Nor can it hang an account of its own under the server's.
    send(system, "group", "atk-sub", userId="mallory", groupId="sub", traits={"parentId": "acme"})
    system.work()
    assert account(system, "sub") == {
        "name": None,
        "traits": {"parentId": "acme"},
        "server_owned": False,
        "parent": None,
    }
    assert refused(system) == 4


def test_a_write_key_still_sets_traits_on_what_it_created(system: System) -> None:
    send(system, "identify", "w-1", userId="wes", traits={"name": "Wes", "plan": "free"})
    send(system, "group", "w-2", userId="wes", groupId="own-co", traits={"name": "Own", "size": 3})
    system.work()
    send(system, "identify", "w-3", userId="wes", traits={"plan": "pro"})
    send(system, "group", "w-4", userId="wes", groupId="own-co", traits={"name": "Own Ltd"})
    system.work()
    assert attributes(system, "wes") == {"name": ("Wes", False), "plan": ("pro", False)}
    assert user(system, "wes") == {
        "email": None,
        "mobile": None,
        "server_owned": False,
        "account": "own-co",
    }
    assert account(system, "own-co") == {
        "name": "Own Ltd",
        "traits": {"name": "Own Ltd", "size": 3},
        "server_owned": False,
        "parent": None,
    }
    assert stored(system) == {"w-1", "w-2", "w-3", "w-4"} and refused(system) == 0
    # E-mail and phone are server-only even on its own users (they identify a person and
    # merge channels): kept as attributes, not as the user's e-mail and mobile.
    send(system, "identify", "w-5", userId="wes", traits={"email": "w@x.example", "phone": "+1"})
    system.work()
    assert (user(system, "wes")["email"], user(system, "wes")["mobile"]) == (None, None)
    assert attributes(system, "wes")["email"] == ("w@x.example", False)
    assert refused(system) == 2
    # The server may take over: what it sets is the server's from then on.
    send(system, "identify", "s-1", system.server_key, userId="wes", traits={"plan": "team"})
    system.work()
    send(system, "identify", "w-6", userId="wes", traits={"plan": "free"})
    system.work()
    assert attributes(system, "wes")["plan"] == ("team", True)
    assert user(system, "wes")["server_owned"] is True and refused(system) == 3


def test_a_write_key_cannot_make_a_server_users_id_its_alias(system: System) -> None:
    """Linking the server's user id as an alias of the attacker's user would make ann's
    events (and, on an erasure of the attacker, their deletion) the attacker's."""
    server_creates_ann_and_acme(system)
    send(system, "track", "ann-buys", system.server_key, userId="ann", event="Bought")
    send(system, "alias", "atk-alias", userId="mallory", previousId="ann")
    system.work()
    send(system, "identify", "atk-anon", userId="mallory", anonymousId="ann")
    system.work()
    linked = {r.alias for r in system.sql(sa.select(aliases.c.alias))}
    assert "ann" not in linked
    with system.engine.connect() as conn:
        mallorys = {e.message_id for e in events_of_user(conn, system.product.id, "mallory")}
    assert "ann-buys" not in mallorys
    assert {"atk-alias", "atk-anon"} <= stored(system) and refused(system) == 2
    # The login flow is untouched: a page's anonymous id joins the server's user.
    send(system, "page", "before-login", anonymousId="device-9")
    send(system, "identify", "login", userId="ann", anonymousId="device-9")
    system.work()
    with system.engine.connect() as conn:
        anns = {e.message_id for e in events_of_user(conn, system.product.id, "ann")}
    assert {"before-login", "login", "ann-buys"} <= anns and refused(system) == 2


def test_an_open_product_lets_a_write_key_change_what_a_server_set(system: System) -> None:
    server_creates_ann_and_acme(system)
    assert cli(system, "products", "policy", system.product.id).strip().endswith("restricted")
    shown = cli(system, "products", "policy", system.product.id, "--client-identity", "open")
    assert shown.strip() == f"{system.product.id}: client identity open"
    send(system, "identify", "open-ann", userId="ann", traits={"email": ATTACKER_EMAIL})
    traits = {"name": "Renamed", "parentId": "holding"}
    send(system, "group", "open-acme", userId="ann", groupId="acme", traits=traits)
    system.work()
    assert user(system, "ann")["email"] == ATTACKER_EMAIL
    assert attributes(system, "ann")["email"] == (ATTACKER_EMAIL, False)  # the page's now
    renamed = account(system, "acme")
    assert renamed is not None and (renamed["name"], renamed["parent"]) == ("Renamed", "holding")
    assert refused(system) == 0
    # And back: restricted again, the next write-key change is refused.
    cli(system, "products", "policy", system.product.id, "--client-identity", "restricted")
    send(system, "identify", "again", userId="ann", traits={"email": "third@evil.example"})
    system.work()
    assert user(system, "ann")["email"] == ATTACKER_EMAIL and refused(system) == 1


def envelope(system: System, key: KeyKind, message_id: str, **body: Any) -> Any:
    """An envelope as a collector enqueues it (JSON values), for one job of several."""
    kind = str(body["type"])
    return msgspec.to_builtins(
        Envelope(
            id=uuid7(),
            dialect="native",
            kind=kind,
            product_id=system.product.id,
            received_at=datetime.now(UTC),
            key=key,
            body={"messageId": message_id} | body,
        )
    )


def test_a_batch_applies_the_policy_in_message_order(system: System) -> None:
    """Server and write-key messages about the same user in ONE job (one transaction):
    each is judged by what the messages before it left, as one message at a time would."""
    server, write = KeyKind.SERVER, KeyKind.WRITE
    ann_first = {"email": SERVER_EMAIL, "plan": "enterprise"}
    ann_then = {"email": ATTACKER_EMAIL, "plan": "free", "nickname": "annie"}
    jobs = [
        envelope(system, server, "b-1", type="identify", userId="ann", traits=ann_first),
        envelope(system, write, "b-2", type="identify", userId="ann", traits=ann_then),
        envelope(system, write, "b-3", type="group", userId="ann", groupId="evil-co"),
        # The other way round: a page's changes, then the server's.
        envelope(system, write, "b-4", type="identify", userId="bob", traits={"plan": "free"}),
        envelope(system, write, "b-5", type="group", userId="bob", groupId="own-co"),
        envelope(system, server, "b-6", type="identify", userId="bob", traits={"plan": "pro"}),
    ]
    make_queue(system.redis, system.settings.queue_name).enqueue_call(JOB_FUNCTION, args=(jobs,))
    system.work()
    assert stored(system) == {"b-1", "b-2", "b-3", "b-4", "b-5", "b-6"}
    assert user(system, "ann") == {
        "email": SERVER_EMAIL,
        "mobile": None,
        "server_owned": True,
        "account": None,  # the server's user: a write key's group call moves it nowhere
    }
    assert attributes(system, "ann") == {
        "email": (SERVER_EMAIL, True),
        "plan": ("enterprise", True),
        "nickname": ("annie", False),
    }
    assert user(system, "bob") == {
        "email": None,
        "mobile": None,
        "server_owned": True,
        "account": "own-co",  # linked while bob was the page's
    }
    assert attributes(system, "bob") == {"plan": ("pro", True)}
    assert refused(system) == 4  # ann's e-mail column, e-mail and plan attributes, account


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_envelope_from_before_the_key_field_is_applied_as_it_was_accepted(
    system: System,
) -> None:
    """An envelope without ``key`` (queued by an older collector across the upgrade) is
    applied as before the policy: as a server key's (``Envelope.key``)."""
    server_creates_ann_and_acme(system)
    body = {"type": "identify", "userId": "ann", "traits": {"email": ATTACKER_EMAIL}}
    legacy = Envelope(
        id="01940000-0000-7000-8000-000000000001",
        dialect="native",
        kind="identify",
        product_id=system.product.id,
        received_at=datetime.now(UTC),
        body=body,
    )
    data = msgspec.to_builtins(legacy)
    assert "key" not in data
    make_queue(system.redis, system.settings.queue_name).enqueue_call(JOB_FUNCTION, args=([data],))
    system.work()
    assert user(system, "ann")["email"] == ATTACKER_EMAIL and refused(system) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_ingest_path_says_which_key_it_took(system: System) -> None:
    """Debug mode shows the envelope as it would travel: its ``key``, and the authority
    the worker would apply its changes under."""
    write, server = system.write_key, system.server_key
    fuzy_event = {
        "eventType": "E",
        "timestamp": "2026-11-30T12:00:00Z",
        "user": {"userId": "u", "paymentProcessorCustomerId": "c"},
    }
    calls: list[tuple[str, str, Any, dict[str, str], str]] = [
        ("POST", "/v1/identify", {"userId": "u", "traits": {"email": "e@x"}}, {}, "native"),
        ("POST", "/v1/batch", {"batch": [{"type": "identify", "userId": "u"}]}, {}, "native"),
        ("PUT", "/v3/event", fuzy_event, {"x-api-key": "{key}"}, "fuzy"),
        (
            "POST",
            "/integrations/event",
            {"playerUniqueId": "p", "events": {}},
            {"APIKey": "{key}"},
            "gameball",
        ),
        (
            "POST",
            "/v1/events",
            {
                "type": "event",
                "event": "e",
                "userId": "u",
                "eventTime": "2026-11-30T12:00:00Z",
                "appKey": "{key}",
            },
            {},
            "pyze",
        ),
        (
            "POST",
            "/api/v1/analytics_events",
            {"customer_id": "c1", "user_id": "u1", "event_type": "view"},
            {"X-API-Key": "{key}"},
            "das",
        ),
        (
            "POST",
            "/capture",
            {"api_key": "{key}", "event": "$identify", "distinct_id": "u"},
            {},
            "posthog",
        ),
    ]
    for key, kind in ((write, "write"), (server, "server")):
        for method, path, body, headers, dialect in calls:
            filled = msgspec.json.decode(msgspec.json.encode(body).replace(b"{key}", key.encode()))
            sent = basic(key) | {h: v.replace("{key}", key) for h, v in headers.items()}
            r = system.client.request(method, "/debug" + path, json=filled, headers=sent)
            assert r.status_code == 200, (path, kind, r.text)
            answer = r.json()
            assert {e["key"] for e in answer["envelopes"]} == {kind}, path
            assert {e["dialect"] for e in answer["envelopes"]} == {dialect}, path
            expected = "client" if kind == "write" else "server"
            assert {rec["authority"] for rec in answer["records"]} == {expected}, path
    # Server-key-only paths: Fuzy's users and accounts, Pyze's profiles.
    for method, path, body, headers in (
        ("POST", "/v3/user", {"id": "u", "email": "e@x.example"}, {"x-api-key": server}),
        ("PUT", "/v3/account", {"id": "a", "name": "A"}, {"x-api-key": server}),
        ("POST", "/users/profile", {"user_profiles": [{"customer_id": "u"}]}, basic(server)),
    ):
        r = system.client.request(method, "/debug" + path, json=body, headers=headers)
        assert r.status_code == 200, (path, r.text)
        assert {e["key"] for e in r.json()["envelopes"]} == {"server"}, path
    # The pixels and the other trackers' formats: the write key (or the site id standing
    # for it); Matomo's token_auth of a server key makes a request the server's.
    agent = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125"}
    page = "https://x.example/"
    matomo = f"/debug/matomo.php?idsite={write}&rec=1&url=http%3A%2F%2Fx.example%2F"
    snowplow = {"e": "pv", "aid": write, "eid": "6f4e0d2a-1c3b-4a5d-8e9f-0a1b2c3d4e5f", "url": page}
    umami = {"type": "event", "payload": {"website": write, "url": "/", "hostname": "x.example"}}
    for method, path, params, body, kind in (
        ("GET", "/debug/p.gif", {"k": write, "t": "identify", "uid": "u"}, None, "write"),
        (
            "GET",
            "/debug/pixel/v1/track",
            {"writeKey": write, "userId": "u", "event": "E"},
            None,
            "write",
        ),
        ("GET", matomo, None, None, "write"),
        ("GET", f"{matomo}&token_auth={server}", None, None, "server"),
        ("GET", "/debug/i", snowplow | {"p": "web", "tv": "js-4.10.1"}, None, "write"),
        ("POST", "/debug/api/event", None, {"n": "pageview", "u": page, "d": write}, "write"),
        ("POST", "/debug/api/send", None, umami, "write"),
    ):
        r = system.client.request(method, path, params=params, json=body, headers=agent)
        assert r.status_code == 200, (path, r.text)
        assert {e["key"] for e in r.json()["envelopes"]} == {kind}, path
    assert system.queued_jobs() == 0
