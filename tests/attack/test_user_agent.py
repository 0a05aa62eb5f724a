"""The stored user agent is bounded (issue 14, finding 5: a 50 MB one was stored whole)."""

from __future__ import annotations

import pytest

from sightline.envelope import MAX_USER_AGENT
from tests.harness import System, basic

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36 "
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_huge_user_agent_is_cut_before_it_travels_and_before_it_is_stored(
    system: System,
) -> None:
    huge = CHROME + "x" * 200_000
    headers = basic(system.write_key) | {"User-Agent": huge}
    system.client.post("/v1/track", json={"userId": "u", "event": "Header"}, headers=headers)
    [job] = [system.redis.hget(key, "data") for key in system.redis.keys("rq:job:*")]
    assert job is not None and len(job) < 5_000  # the header's copy was cut before Redis
    in_body = huge[:20_000]  # a message is at most 32 KB
    body_agent = {"userId": "u", "event": "Body", "context": {"userAgent": in_body}}
    system.client.post("/v1/track", json=body_agent, headers=basic(system.write_key))
    system.work()
    stored = {e.name: e.context["userAgent"] for e in system.events()}
    assert stored["Header"] == huge[:MAX_USER_AGENT]
    assert stored["Body"] == huge[:MAX_USER_AGENT]
    assert {e.context["ua"]["browser_family"] for e in system.events()} == {"Chrome"}
