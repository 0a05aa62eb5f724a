"""A person's events, newest first, page by page: the user filter's two alternatives
(their user id; no user id and one of their anonymous ids) merged in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sightline.store.identity import events_of_user
from sightline.store.reads import EventQuery, list_events
from tests.harness import System


def test_pages_of_a_person_merge_both_alternatives_in_time_order(system: System) -> None:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    batch = []
    for i in range(23):
        when = (start + timedelta(minutes=i)).isoformat()
        who = {"anonymousId": "anon-p"} if i % 3 else {"userId": "pat", "anonymousId": "anon-p"}
        batch.append({"type": "track", "event": f"E{i}", "timestamp": when, **who})
    # Someone else, and the same browser later signed in as another person: not Pat's.
    batch.append({"type": "track", "event": "Other", "userId": "olga", "anonymousId": "anon-p"})
    batch.append({"type": "track", "event": "Stranger", "anonymousId": "anon-s"})
    batch.append({"type": "identify", "userId": "pat", "anonymousId": "anon-p"})
    r = system.send("/v1/batch", {"batch": batch})
    assert r.status_code == 200, r.text
    system.work()
    pid = system.product.id
    with system.engine.connect() as conn:
        expected = [e.id for e in reversed(events_of_user(conn, pid, "pat"))]
        found: list[str] = []
        cursor = None
        while True:
            page = list_events(conn, EventQuery(product_id=pid, user="pat"), limit=4, cursor=cursor)
            found += [e.id for e in page.events]
            cursor = page.next_cursor
            if cursor is None:
                break
        # Asked by one of the anonymous ids: the same person.
        by_alias = list_events(conn, EventQuery(product_id=pid, user="anon-p"), limit=100)
    assert len(expected) == 24  # 23 tracks and the identify
    assert found == expected
    assert [e.id for e in by_alias.events] == expected
