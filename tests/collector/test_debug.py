"""Debug mode: ``/debug/<any ingest path>`` validates and normalises, and stores nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import System, basic


def debug(system: System, path: str, body: Any, **headers: str) -> Any:
    return system.client.post("/debug" + path, json=body, headers=basic(system.write_key) | headers)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_debug_track_shows_the_canonical_records_and_stores_nothing(system: System) -> None:
    response = debug(
        system,
        "/v1/track",
        {"userId": "u1", "event": "Signed Up", "messageId": "m-1", "properties": {"plan": "pro"}},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["debug"] is True and answer["stored"] is False
    [envelope] = answer["envelopes"]
    assert (envelope["dialect"], envelope["kind"]) == ("native", "track")
    [record] = answer["records"]
    [event] = record["events"]
    assert (event["name"], event["type"], event["user_id"]) == ("Signed Up", "track", "u1")
    assert (event["message_id"], event["properties"]) == ("m-1", {"plan": "pro"})
    assert system.queued_jobs() == 0 and system.status().accepted == 0
    system.work()
    assert system.events() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_debug_refusal_is_the_real_refusal(system: System) -> None:
    real = system.client.post("/v1/track", json={"event": ""}, headers=basic(system.write_key))
    shown = debug(system, "/v1/track", {"event": ""})
    assert shown.status_code == real.status_code == 400
    assert shown.json() == real.json()
    assert {e["field"] for e in shown.json()["errors"]} >= {"event"}
    unknown = system.client.post("/debug/v1/track", json={"userId": "u", "event": "E"})
    assert unknown.status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_dialect_has_a_debug_path(system: System) -> None:
    key = system.server_key
    calls = [
        ("/integrations/event", {"playerUniqueId": "p1", "events": {"buy": {"price": 3}}}),
        (
            "/api/v1/analytics_events",
            {"customer_id": "c1", "user_id": "u1", "event_type": "view"},
        ),
    ]
    for path, body in calls:
        response = system.client.post(
            "/debug" + path, json=body, headers=basic(key) | {"APIKey": key}
        )
        assert response.status_code == 200, (path, response.text)
        assert response.json()["records"][0]["events"], path
    pixel = system.client.get(
        "/debug/p.gif", params={"k": system.write_key, "e": "Opened", "t": "track", "uid": "u"}
    )
    assert pixel.status_code == 200
    [event] = pixel.json()["records"][0]["events"]
    assert (event["name"], event["dialect"]) == ("Opened", "pixel")
    refused = system.client.get("/debug/p.gif", params={"k": "nope"})
    assert refused.status_code == 401  # an image tag gets its GIF; a debug request, the reason
    assert system.queued_jobs() == 0
