"""Erasure and suppression (``sightline users forget``), on SQLite and PostgreSQL: what a
forget deletes and keeps, its receipt, the suppression of later and already queued events,
and the bounded, resumable transactions."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.live import mark_viewing
from sightline.redis_keys import Counter, counter_key, live_stream_key
from sightline.store.erasure import CLI, forget_user, is_suppressed
from sightline.store.schema import (
    aliases,
    erasures,
    events,
    sessions,
    suppressed_ids,
    user_attributes,
    users,
)
from sightline.store.writer import write_batch
from tests.cli.test_cli import run
from tests.harness import System
from worker.batch import BatchProcessor
from worker.enricher import Enricher


def _ok(r: Any) -> None:
    assert r.status_code == 200, r.text


def _person(system: System, user: str, anon: str) -> None:
    """Anonymous page views, then identify (traits) and group (account), then tracks;
    and a batch whose invalid message names the user (a dead letter)."""
    _ok(system.send("/v1/page", {"anonymousId": anon, "name": "Home"}))
    _ok(system.send("/v1/track", {"anonymousId": anon, "event": "Browsed"}))
    _ok(
        system.send(
            "/v1/identify",
            {"userId": user, "anonymousId": anon, "traits": {"plan": "pro", "email": f"{user}@x"}},
        )
    )
    _ok(system.send("/v1/group", {"userId": user, "groupId": f"acme-{user}"}))
    _ok(system.send("/v1/track", {"userId": user, "event": "Bought"}))
    r = system.send(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": user, "event": "Fine"},
                {"type": "track", "userId": user, "event": ""},
            ]
        },
    )
    _ok(r)
    assert r.json()["rejected"], r.text


def _count(system: System, table: sa.Table, where: Any = None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    return int(system.sql(query)[0][0])


def _mine(user: str, anon: str) -> Any:
    return sa.or_(events.c.user_id.in_((user, anon)), events.c.anonymous_id.in_((user, anon)))


def test_forget_erases_the_person_and_nothing_else(system: System) -> None:
    _person(system, "ursula", "anon-ursula")
    _person(system, "victor", "anon-victor")
    system.work()
    pid = system.product.id
    assert _count(system, events, _mine("ursula", "anon-ursula")) == 6
    before = {
        "events": _count(system, events, _mine("victor", "anon-victor")),
        "attributes": _count(system, user_attributes),
        "dead": len(system.dead_letters()),
    }
    assert before["dead"] == 2 and before["attributes"] >= 2

    erasure = forget_user(system.engine, pid, "ursula", requested_by=CLI)

    assert _count(system, events, _mine("ursula", "anon-ursula")) == 0
    assert _count(system, events, _mine("victor", "anon-victor")) == before["events"]
    assert _count(system, users, users.c.external_id.in_(("ursula", "anon-ursula"))) == 0
    assert _count(system, users, users.c.external_id == "victor") == 1
    assert _count(system, aliases, aliases.c.alias == "anon-ursula") == 0
    assert _count(system, aliases, aliases.c.alias == "anon-victor") == 1
    assert _count(system, sessions, sessions.c.visitor.in_(("ursula", "anon-ursula"))) == 0
    assert _count(system, sessions, sessions.c.visitor.in_(("victor", "anon-victor"))) > 0
    assert _count(system, user_attributes) == before["attributes"] // 2
    letters = system.dead_letters()
    assert len(letters) == 1 and "victor" in msgspec.json.encode(letters[0].envelope).decode()
    # The account itself (a company) stays; only the person's link to it went.
    kept = sa.text("SELECT count(*) FROM accounts WHERE external_id = 'acme-ursula'")
    assert system.sql(kept)[0][0] == 1

    receipt = erasure.receipt
    assert receipt.product_id == pid and receipt.requested_by == "cli"
    assert receipt.completed_at is not None and receipt.requests == 1
    assert receipt.deleted["events"] == 6
    assert receipt.deleted["dead_letters"] == 1
    assert receipt.deleted["users"] == 1 and receipt.deleted["aliases"] == 1
    assert receipt.deleted["account_links"] == 1
    assert receipt.deleted["user_attributes"] == before["attributes"] // 2
    assert receipt.deleted["sessions"] >= 1
    assert receipt.deleted["suppressed_ids"] == 2
    # No personal data in the receipt, nor on the suppression list: hashes only.
    stored = " ".join(str(v) for row in system.sql(sa.select(erasures)) for v in row)
    stored += " ".join(str(v) for row in system.sql(sa.select(suppressed_ids)) for v in row)
    assert "ursula" not in stored and "anon-ursula" not in stored
    assert receipt.reference in stored
    with system.engine.connect() as conn:
        assert is_suppressed(conn, pid, "ursula") and is_suppressed(conn, pid, "anon-ursula")
        assert not is_suppressed(conn, pid, "victor")


def test_forgetting_an_anonymous_id_forgets_its_person_too(system: System) -> None:
    _person(system, "u1", "a1")
    system.work()
    erasure = forget_user(system.engine, system.product.id, "a1", requested_by=CLI)
    assert _count(system, events, _mine("u1", "a1")) == 0
    assert erasure.receipt.deleted["users"] == 1


def test_later_and_queued_events_are_dropped_and_counted(system: System) -> None:
    _person(system, "u1", "a1")
    system.work()
    # Queued before the forget, processed after it.
    _ok(system.send("/v1/track", {"userId": "u1", "event": "Queued"}))
    assert system.queued_jobs() == 1
    forget_user(system.engine, system.product.id, "u1", requested_by=CLI)
    # After it: the user id, the known anonymous id alone, an identify, an alias; another
    # person's event, which is stored.
    _ok(system.send("/v1/track", {"userId": "u1", "event": "Later"}))
    _ok(system.send("/v1/page", {"anonymousId": "a1", "name": "Back"}))
    _ok(system.send("/v1/identify", {"userId": "u1", "traits": {"plan": "free"}}))
    _ok(system.send("/v1/alias", {"previousId": "a1", "userId": "u9"}))
    # A batch: another person's event (stored) and an invalid message naming the person
    # (not kept as a dead letter either).
    batch = [
        {"type": "track", "userId": "u1", "event": ""},
        {"type": "track", "userId": "u3", "event": "Other"},
    ]
    r = system.send("/v1/batch", {"batch": batch})
    _ok(r)
    assert r.json()["rejected"], r.text
    system.work()
    assert [e.name for e in system.events()] == ["Other"]
    assert system.dead_letters() == []
    assert _count(system, users, users.c.external_id.in_(("u1", "a1", "u9"))) == 0
    assert _count(system, user_attributes) == 0
    counted = system.redis.get(counter_key(system.settings.queue_name, Counter.SUPPRESSED))
    assert int(counted or 0) == 6  # five messages' events and the dead letter


def test_a_stale_worker_cache_still_drops(system: System) -> None:
    """One processor (its cache warm from a batch before the forget) drops what follows."""
    processor = BatchProcessor(system.engine, Enricher.from_settings(system.settings))

    def envelopes(path: str, body: dict[str, Any]) -> list[Any]:
        r = system.send("/debug" + path, body)
        _ok(r)
        return list(r.json()["envelopes"])

    first = processor.process(envelopes("/v1/track", {"userId": "u1", "event": "Before"}))
    assert (first.stored, first.suppressed) == (1, 0)
    forget_user(system.engine, system.product.id, "u1", requested_by=CLI)
    later = processor.process(envelopes("/v1/track", {"userId": "u1", "event": "After"}))
    assert (later.stored, later.suppressed) == (0, 1)
    assert system.events() == []


def test_a_batch_in_flight_during_the_forget_is_erased_too(system: System) -> None:
    """A batch whose write transaction is open when the forget starts: the forget waits
    for it (SQLite's write lock; PostgreSQL's advisory lock on the list), so what it
    commits is found and deleted, never left behind."""
    processor = BatchProcessor(system.engine, Enricher.from_settings(system.settings))
    r = system.send("/debug/v1/track", {"userId": "u1", "event": "In flight"})
    _ok(r)
    item = processor.prepare(r.json()["envelopes"][0])
    done = threading.Event()

    def forget() -> None:
        forget_user(system.engine, system.product.id, "u1", requested_by=CLI)
        done.set()

    with system.engine.begin() as conn:
        kept, _, dropped = processor.suppression.filter(conn, [item])
        assert (len(kept), dropped) == (1, 0)
        write_batch(conn, kept)
        thread = threading.Thread(target=forget)
        thread.start()
        assert not done.wait(1.0), "the forget did not wait for the batch in flight"
    thread.join(30)
    assert done.is_set()
    assert system.events() == []


def test_twelve_thousand_events_in_bounded_transactions_and_a_rerun_is_a_no_op(
    system: System,
) -> None:
    for n in range(24):
        batch = [
            {"type": "track", "userId": "big", "event": "E", "messageId": f"m{n}-{i}"}
            for i in range(500)
        ]
        _ok(system.send("/v1/batch", {"batch": batch}))
    _ok(system.send("/v1/track", {"userId": "small", "event": "Kept"}))
    system.work()
    assert _count(system, events, events.c.user_id == "big") == 12_000
    commits: list[int] = []

    def commit(_conn: Any) -> None:
        commits.append(1)

    sa.event.listen(system.engine, "commit", commit)
    try:
        erasure = forget_user(
            system.engine, system.product.id, "big", requested_by=CLI, chunk_size=5_000
        )
    finally:
        sa.event.remove(system.engine, "commit", commit)
    assert _count(system, events, events.c.user_id == "big") == 0
    assert [e.name for e in system.events()] == ["Kept"]
    assert erasure.receipt.deleted["events"] == 12_000
    # suppression + 3 event chunks (5,000, 5,000, 2,000) + sessions + users + close
    assert erasure.transactions >= 6
    assert len(commits) == erasure.transactions
    again = forget_user(system.engine, system.product.id, "big", requested_by=CLI)
    assert again.receipt.reference == erasure.receipt.reference
    assert again.receipt.requests == 2
    assert again.receipt.deleted == erasure.receipt.deleted  # nothing more went
    assert [e.name for e in system.events()] == ["Kept"]


def _live(system: System) -> list[dict[str, Any]]:
    entries = system.redis.xrange(live_stream_key(system.settings.queue_name))
    return [msgspec.json.decode(fields[b"e"]) for _, fields in entries]


def test_cli_forget_and_receipts(system: System) -> None:
    mark_viewing(system.redis, system.settings.queue_name)  # someone watches: published
    _person(system, "carol", "anon-carol")
    _ok(system.send("/v1/track", {"userId": "dave", "event": "Kept"}))
    system.work()
    assert len(_live(system)) == 7
    out = run(system, "users", "forget", system.product.id, "carol", "--chunk-size", "2")
    assert "receipt er_" in out and "events 6" in out and "live_stream 6" in out
    assert _count(system, events, _mine("carol", "anon-carol")) == 0
    # The live stream (Redis) keeps only the other person's event.
    assert [e["name"] for e in _live(system)] == ["Kept"]
    listed = run(system, "users", "receipts", "--json")
    receipt = msgspec.json.decode(listed.splitlines()[0])
    assert receipt["requested_by"] == "cli" and receipt["deleted"]["events"] == 6
    assert "carol" not in listed
