"""GET /p.gif: always an uncached 1x1 GIF; usable hits stored, the rest counted or dead-lettered."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from collector.dialects.pixel import GIF
from sightline.model import EventType
from tests.harness import System


def pixel(system: System, **params: str) -> tuple[int, bytes, dict[str, str]]:
    response = system.client.get("/p.gif?" + urlencode(params))
    return response.status_code, response.content, dict(response.headers)


def assert_gif(status: int, body: bytes, headers: dict[str, str]) -> None:
    assert status == 200
    assert body == GIF and body.startswith(b"GIF89a")
    assert headers["content-type"] == "image/gif"
    assert "no-store" in headers["cache-control"]


def test_noscript_page_view_with_plain_fields(system: System) -> None:
    assert_gif(
        *pixel(
            system,
            k=system.write_key,
            u="https://shop.example/a",
            ti="A page",
            r="https://ref.example/",
        )
    )
    system.work()
    [event] = system.events()
    assert (event.type, event.name, event.dialect) == (EventType.PAGE, "A page", "pixel")
    assert event.context["page"] == {
        "url": "https://shop.example/a",
        "referrer": "https://ref.example/",
        "title": "A page",
    }


def test_email_open_as_a_track_event_with_a_user(system: System) -> None:
    assert_gif(
        *pixel(system, k=system.write_key, t="track", e="Email Opened", uid="u-7", m="open-1")
    )
    assert_gif(
        *pixel(system, k=system.write_key, t="track", e="Email Opened", uid="u-7", m="open-1")
    )
    system.work()
    [event] = system.events()  # the second open of the same message id is a duplicate
    assert (event.name, event.user_id, event.message_id) == ("Email Opened", "u-7", "open-1")


def test_a_whole_native_message_in_d(system: System) -> None:
    message = {"type": "track", "event": "Fallback", "anonymousId": "a1", "properties": {"x": 1}}
    assert_gif(*pixel(system, k=system.write_key, d=json.dumps(message)))
    system.work()
    [event] = system.events()
    assert (event.name, event.properties) == ("Fallback", {"x": 1})


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"k": "wk_unknown"}, id="unknown-key"),
    ],
)
def test_unusable_keys_still_get_an_image_and_are_counted(
    system: System, params: dict[str, str]
) -> None:
    assert_gif(*pixel(system, **params))
    assert system.queued_jobs() == 0
    assert (
        'sightline_events_rejected_total{dialect="pixel",reason="auth_401"} 1.0'
        in system.client.get("/metrics").text
    )


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        pytest.param({"d": "{not json"}, "JSON", id="bad-json"),
        pytest.param(
            {"d": json.dumps({"type": "track", "anonymousId": "a"})}, "event", id="missing-event"
        ),
        pytest.param({"t": "nonsense"}, "type", id="unknown-type"),
        pytest.param({"d": "[1, 2]"}, "object", id="not-an-object"),
    ],
)
def test_unusable_fields_get_an_image_and_a_dead_letter(
    system: System, params: dict[str, str], reason: str
) -> None:
    assert_gif(*pixel(system, k=system.write_key, **params))
    system.work()
    assert system.events() == []
    [letter] = system.dead_letters()
    assert letter.reason == "schema"
    assert reason in letter.detail
