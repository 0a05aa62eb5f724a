"""The pixel's smaller findings (issue 14, finding 13): HEAD records nothing, and a
server key in a pixel URL (a secret in access logs) is refused."""

from __future__ import annotations

import pytest

from tests.harness import System


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_head_records_nothing_and_a_server_key_is_refused(system: System) -> None:
    params = {"k": system.write_key, "t": "track", "e": "Opened", "uid": "u"}
    head = system.client.head("/p.gif", params=params)
    assert head.status_code == 200 and head.headers["content-type"] == "image/gif"
    with_secret = system.client.get("/p.gif", params=params | {"k": system.server_key})
    assert with_secret.status_code == 200  # an image tag still gets its image
    assert system.queued_jobs() == 0
    metrics = system.metrics()
    assert 'sightline_events_rejected_total{dialect="pixel",reason="auth_403"} 1.0' in metrics
    shown = system.client.get("/debug/p.gif", params=params | {"k": system.server_key})
    assert shown.status_code == 403 and "never a server key" in shown.text
    assert system.client.get("/p.gif", params=params).status_code == 200
    system.work()
    assert [e.name for e in system.events()] == ["Opened"]
