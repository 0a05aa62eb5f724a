"""Rate limits per product and per client address (issue 14, item 5)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from sightline.settings import Settings
from tests.cli.test_cli import run
from tests.harness import System, basic, running_system
from tests.load import collector_process
from tests.servers import free_port


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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_shared_limits_count_in_redis(settings: Settings) -> None:
    with running_system(settings.with_changes(shared_rate_limits=True)) as system:
        run(system, "products", "limits", system.product.id, "--per-key", "1000", "--per-ip", "3")
        reload_keys(system)
        codes: list[int] = []
        for _ in range(20):  # 3 a second: a 429 comes unless these take 6 s
            codes.append(system.send("/v1/track", {"userId": "u", "event": "E"}).status_code)
            if codes[-1] == 429:
                break
        assert codes[0] == 200 and codes[-1] == 429
        refused = system.send("/v1/track", {"userId": "u", "event": "late"})
        if refused.status_code == 429:  # else a new window opened meanwhile
            assert refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 2
            assert "per ip" in refused.json()["message"]
        # The address's refusals used none of the key's limit (both windows open together).
        counted = [int(system.redis.get(k) or 0) for k in system.redis.keys("sightline:rate:*")]
        assert all(n <= 3 for n in counted)
        metrics = system.metrics()
        assert 'sightline_rate_limited_total{dialect="native",scope="ip"}' in metrics


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_collector_processes_share_one_limit(
    system: System, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A product limited to 50 events/s for its key: collector A takes a batch of 50, and
    collector B, a separate process, refuses the next event (counted apart, B would
    take 50 more). Tried a few times: a stall of a second between the two requests
    would open a new window."""
    rate = 50
    run(system, "products", "limits", system.product.id, "--per-key", str(rate))
    env = {
        **os.environ,
        "SIGHTLINE_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": system.settings.redis_url or "",
        "DATABASE_URL": system.settings.sqlalchemy_url,
        "SIGHTLINE_SHARED_RATE_LIMITS": "on",
    }
    a_port, b_port = free_port(), free_port()
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * rate}
    one = {"userId": "u", "event": "E"}
    auth = (system.write_key, "")
    answers: list[tuple[int, int]] = []
    with (
        collector_process(env, a_port),
        collector_process(env, b_port),
        httpx.Client(timeout=10) as a,
        httpx.Client(timeout=10) as b,
    ):
        for _ in range(5):
            first = a.post(f"http://127.0.0.1:{a_port}/v1/batch", json=batch, auth=auth)
            second = b.post(f"http://127.0.0.1:{b_port}/v1/track", json=one, auth=auth)
            answers.append((first.status_code, second.status_code))
            if answers[-1] == (200, 429):
                assert int(second.headers["retry-after"]) >= 1
                break
            time.sleep(1.1)  # let the window close before the next try
    with capsys.disabled():
        print(f"\n[shared limit {rate}/s, collector A then B] answers {answers}")
    assert (200, 429) in answers
