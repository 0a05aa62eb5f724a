"""A client retry after a 503 that was in fact stored stores nothing twice, for formats
without a message id (issue 14, finding 13: DAS, Gameball and plain pixels)."""

from __future__ import annotations

import pytest

from tests.harness import System, basic


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_same_request_twice_is_stored_once(system: System) -> None:
    key = system.server_key
    headers = basic(key) | {"APIKey": key}
    das = {"customer_id": "c1", "user_id": "u1", "event_type": "view", "recording_id": "r1"}
    game = {"playerUniqueId": "p1", "events": {"buy": {"price": 3}, "review": {}}}
    pixel = {"k": system.write_key, "t": "track", "e": "Opened", "uid": "u2"}
    for _ in range(2):  # the second is the client's retry
        assert (
            system.client.post("/api/v1/analytics_events", json=das, headers=headers).status_code
            == 201
        )
        assert (
            system.client.post("/integrations/event", json=game, headers=headers).status_code == 200
        )
        assert system.client.get("/p.gif", params=pixel).status_code == 200
    different = dict(das, event_type="click")
    assert (
        system.client.post("/api/v1/analytics_events", json=different, headers=headers).status_code
        == 201
    )
    system.work()
    names = sorted(e.name for e in system.events())
    assert names == ["Opened", "buy", "click", "review", "view"]
