"""Rate limits per product and per client address (issue 14, item 5)."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import run
from tests.harness import System, basic


def reload_keys(system: System) -> None:
    assert system.client.portal is not None
    system.client.portal.call(system.client.app_state["directory"].reload)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_over_the_limit_is_a_429_with_retry_after(system: System) -> None:
    run(system, "products", "limits", system.product.id, "--per-ip", "5")
    reload_keys(system)
    statuses = [
        system.send("/v1/track", {"userId": "u", "event": f"E{i}"}).status_code for i in range(8)
    ]
    assert statuses[:5] == [200] * 5  # the burst: one second's worth
    assert 429 in statuses[5:]
    refused = system.send("/v1/track", {"userId": "u", "event": "late"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["code"] == "rate_limited"
    metrics = system.metrics()
    assert 'sightline_rate_limited_total{dialect="native",scope="ip"}' in metrics
    batch = {"batch": [{"type": "track", "userId": "u", "event": "B"}] * 50}
    assert system.send("/v1/batch", batch).status_code == 429  # a batch costs its events


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_limits_are_per_product_and_off_by_default(system: System) -> None:
    other = system.create_product("Other")
    run(system, "products", "limits", system.product.id, "--per-key", "2")
    reload_keys(system)
    codes = [system.send("/v1/track", {"userId": "u", "event": "E"}).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    free = [
        system.client.post(
            "/v1/track", json={"userId": "u", "event": "E"}, headers=basic(other.write_keys[0])
        ).status_code
        for _ in range(20)
    ]
    assert free == [200] * 20
