"""Hostile JSON (issue 14, findings 6 and 7): deep nesting and huge numbers are 400s.

Each was a 500 with a traceback before: the decoder's recursion limit (near 1,000
levels) and Python's 4,300-digit limit on integers escaped as exceptions.
"""

# ruff: noqa: E501  (request bodies are kept whole, one per line)
from __future__ import annotations

import pytest

from tests.harness import System, basic


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def bodies(value: str) -> list[tuple[str, str]]:
    """(path, body) of every JSON ingest endpoint, with ``value`` where a property goes."""
    return [
        ("/v1/track", '{"userId":"u","event":"E","properties":{"a":VALUE}}'.replace("VALUE", value)),
        ("/v1/batch", '{"batch":[{"type":"track","userId":"u","event":"E","properties":{"a":VALUE}}]}'.replace("VALUE", value)),
        ("/v3/event", '{"eventType":"E","timestamp":"2026-01-01T00:00:00Z","user":{"userId":"u"},"metadata":{"a":VALUE}}'.replace("VALUE", value)),
        ("/v1/events", '{"type":"event","event":"E","userId":"u","eventTime":"2026-01-01T00:00:00Z","appKey":"K","attributes":{"a":VALUE}}'.replace("VALUE", value)),
        ("/users/profile", '{"user_profiles":[{"userId":"u","a":VALUE}]}'.replace("VALUE", value)),
        ("/api/v1/analytics_events", '{"customer_id":"c","user_id":"u","event_type":"view","version_info":{"a":VALUE}}'.replace("VALUE", value)),
        ("/integrations/event", '{"playerUniqueId":"p","events":{"buy":{"a":VALUE}}}'.replace("VALUE", value)),
        ("/integrations/event", '{"playerUniqueId":"p","unknown":VALUE,"events":{"buy":{}}}'.replace("VALUE", value)),
        ("/e/", '{"api_key":"K","event":"E","distinct_id":"u","properties":{"a":VALUE}}'.replace("VALUE", value)),
        ("/batch/", '{"api_key":"K","batch":[{"event":"E","distinct_id":"u","properties":{"a":VALUE}}]}'.replace("VALUE", value)),
    ]  # fmt: skip


NO_NESTED_VALUES = {"/users/profile", "/integrations/event"}


def post(system: System, path: str, body: str) -> tuple[int, str]:
    key = system.server_key
    headers = basic(key) | {"APIKey": key, "X-API-Key": key, "Content-Type": "application/json"}
    response = system.client.post(path, content=body.replace('"K"', f'"{key}"'), headers=headers)
    return response.status_code, response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("levels", [65, 2_000, 10_000])
def test_deep_nesting_is_a_400_everywhere(system: System, levels: int) -> None:
    for path, body in bodies(nested(levels)):
        status, text = post(system, path, body)
        assert status in (400, 422), (path, status, text)
        assert "nested deeper than 64 levels" in text, (path, text)
    assert system.queued_jobs() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nesting_up_to_the_limit_is_stored(system: System) -> None:
    # Pyze profiles and Gameball metadata take no nested values (a precise 400 of their own).
    nesting = [(p, b) for p, b in bodies(nested(50)) if p not in NO_NESTED_VALUES]
    for path, body in nesting:
        status, text = post(system, path, body)
        assert status < 300, (path, status, text)
    system.work()
    assert system.dead_letters() == []
    assert len(system.events()) == len(nesting)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_5000_digit_number_is_a_400(system: System) -> None:
    for path, body in bodies("1" * 5_000):
        status, text = post(system, path, body)
        assert 400 <= status < 500, (path, status, text)
    assert system.queued_jobs() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_deep_pixel_is_an_image_and_never_a_500(system: System) -> None:
    d = '{"type":"track","userId":"u","event":"E","properties":{"a":' + nested(1_200) + "}}"
    response = system.client.get("/p.gif", params={"k": system.write_key, "d": d[:8000]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    system.work()
    assert system.events() == []
    [letter] = system.dead_letters()
    assert "nested deeper than 64 levels" in letter.detail
