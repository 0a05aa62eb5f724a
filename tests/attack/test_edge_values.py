"""Values refused at the edge (issue 14, findings 9 and 10): times that leave datetime's
range once in UTC (they were a 200, then an OverflowError dead letter), and a
``context.ip`` that is no address (it was stored verbatim, markup included)."""

from __future__ import annotations

import pytest

from tests.harness import System


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timestamp": "9999-12-31T23:59:59-14:00"}, "timestamp"),
        ({"originalTimestamp": "0001-01-01T00:00:00+14:00"}, "originalTimestamp"),
        ({"sentAt": "9999-12-31T23:59:59-14:00"}, "sentAt"),
        ({"context": {"ip": "<img src=x onerror=alert(1)>"}}, "context.ip"),
        ({"context": {"ip": 42}}, "context.ip"),
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refused_with_the_field(system: System, body: dict[str, object], field: str) -> None:
    response = system.send("/v1/track", {"userId": "u", "event": "E", **body})
    assert response.status_code == 400, response.text
    assert field in {e["field"] for e in response.json()["errors"]}
    batch = system.send(
        "/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "E", **body}]}
    )
    assert batch.status_code == 400
    assert system.queued_jobs() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_sent_at_out_of_range_is_refused(system: System) -> None:
    body = {
        "sentAt": "0001-01-01T00:00:00+14:00",
        "batch": [{"type": "track", "userId": "u", "event": "E"}],
    }
    response = system.send("/v1/batch", body)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["sentAt"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_real_addresses_and_extreme_but_valid_times_are_stored(system: System) -> None:
    for ip in ("203.0.113.9", "2001:db8::1"):
        body = {
            "userId": "u",
            "event": ip,
            "context": {"ip": ip},
            "timestamp": "0001-01-02T00:00:00Z",
        }
        assert system.send("/v1/track", body).status_code == 200
    system.work()
    assert system.dead_letters() == []
    assert len(system.events()) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_peer_that_is_no_address_is_not_kept(system: System) -> None:
    """What uvicorn makes of a trusted proxy's garbage X-Forwarded-For (here the test
    client's own peer name, ``testclient``) is not stored as the client's address."""
    system.send("/v1/track", {"userId": "u", "event": "E"})
    system.work()
    [event] = system.events()
    assert event.context["ip"] is None
