"""GET /p.gif: always an uncached 1x1 GIF; usable hits stored, the rest counted or dead-lettered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from collector.endpoints.pixel import GIF
from sightline.model import EventType
from sightline.origins import origin_of
from tests.harness import System


def pixel(
    system: System, referer: str | None = None, **params: str
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Referer": referer} if referer is not None else {}
    response = system.client.get("/p.gif?" + urlencode(params), headers=headers)
    return response.status_code, response.content, dict(response.headers)


def fallback(
    system: System, body: dict[str, Any], referer: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """What the snippet sends when it cannot POST: ``/p.gif?d=encodeURIComponent(batch)``."""
    query = "d=" + quote(json.dumps(body), safe="-_.!~*'()")
    headers = {"Referer": referer} if referer is not None else {}
    response = system.client.get("/p.gif?" + query, headers=headers)
    return response.status_code, response.content, dict(response.headers)


def rejected(system: System, reason: str) -> float:
    prefix = f'sightline_events_rejected_total{{dialect="pixel",reason="{reason}"}} '
    for line in system.metrics().splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


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
        'sightline_events_rejected_total{dialect="pixel",reason="auth_401"} 1.0' in system.metrics()
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


SENT_AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def batch_body(key: str | None, *messages: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"sentAt": SENT_AT.isoformat(), "batch": list(messages)}
    if key is not None:
        body["writeKey"] = key
    return body


def test_a_native_batch_in_d_is_stored_message_by_message(system: System) -> None:
    body = batch_body(
        system.write_key,
        {
            "type": "page",
            "name": "Pricing",
            "anonymousId": "a1",
            "messageId": "m-page",
            "timestamp": (SENT_AT - timedelta(seconds=5)).isoformat(),
            "context": {"page": {"url": "https://shop.example/pricing"}},
        },
        {"type": "track", "event": "Signup", "anonymousId": "a1", "messageId": "m-track"},
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m-identify"},
    )
    before = datetime.now(UTC)
    assert_gif(*fallback(system, body))  # no k: the batch's writeKey
    assert system.status().accepted == 3  # one envelope per message
    system.work()
    events = {e.message_id: e for e in system.events()}
    assert set(events) == {"m-page", "m-track", "m-identify"}
    assert {e.dialect for e in events.values()} == {"pixel"}
    assert {e.sent_at for e in events.values()} == {SENT_AT}
    page, track = events["m-page"], events["m-track"]
    assert (page.type, page.name, track.type, track.name) == (
        EventType.PAGE,
        "Pricing",
        EventType.TRACK,
        "Signup",
    )
    # sentAt corrects the client's clock: 5 s before it sent, by its own clock
    assert before - timedelta(seconds=6) <= page.timestamp <= datetime.now(UTC)
    assert events["m-identify"].user_id == "u1"


def test_k_wins_over_the_write_key_in_d(system: System) -> None:
    body = batch_body("wk_unknown", {"type": "track", "event": "E", "userId": "u"})
    assert_gif(*pixel(system, k=system.write_key, d=json.dumps(body)))
    system.work()
    [event] = system.events()
    assert (event.name, event.product_id, event.dialect) == ("E", system.product.id, "pixel")


def test_a_single_message_in_d_may_carry_the_write_key(system: System) -> None:
    message = {"type": "track", "event": "Keyed", "anonymousId": "a", "writeKey": system.write_key}
    assert_gif(*pixel(system, d=json.dumps(message)))
    system.work()
    [event] = system.events()
    assert (event.name, event.dialect) == ("Keyed", "pixel")


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        pytest.param(
            [{"type": "track", "userId": "u"}, {"type": "track", "userId": "u"}],
            "batch[1].event",
            id="no-message-valid",
        ),
        pytest.param([], "at least one message", id="empty"),
        pytest.param([{"type": "nonsense", "userId": "u"}], "batch[0].type", id="unknown-type"),
    ],
)
def test_an_invalid_batch_in_d_gets_an_image_a_count_and_a_dead_letter(
    system: System, messages: list[dict[str, Any]], reason: str
) -> None:
    assert_gif(*fallback(system, batch_body(system.write_key, *messages)))
    assert rejected(system, "invalid_batch") == 1
    system.work()
    assert system.events() == []  # no valid message: nothing stored, like /v1/batch
    [letter] = system.dead_letters()
    assert letter.reason == "schema"
    assert "invalid batch" in letter.detail and reason in letter.detail


def test_a_batch_in_d_keeps_its_valid_messages_and_dead_letters_the_others(
    system: System,
) -> None:
    body = batch_body(
        system.write_key,
        {"type": "track", "event": "Ok", "userId": "u"},
        {"type": "track", "userId": "u"},
    )
    assert_gif(*fallback(system, body))
    assert rejected(system, "invalid_message") == 1
    system.work()
    assert [(e.name, e.dialect) for e in system.events()] == [("Ok", "pixel")]
    [letter] = system.dead_letters()
    assert letter.reason == "schema" and "batch[1].event" in letter.detail


def test_a_batch_without_any_key_is_counted(system: System) -> None:
    assert_gif(*fallback(system, batch_body(None, {"type": "track", "event": "E", "userId": "u"})))
    assert system.queued_jobs() == 0
    assert rejected(system, "auth_401") == 1


# -- the Referer stands for the origin an image request does not send --------------


@pytest.fixture
def shop_key(system: System) -> str:
    """A product that allows https://shop.example only."""
    return system.create_product("Shop", origins=("https://shop.example",)).write_keys[0]


@pytest.mark.parametrize(
    "referer",
    [
        pytest.param("https://evil.example/page", id="other-host"),
        pytest.param("http://shop.example/page", id="other-scheme"),
        pytest.param("https://shop.example:8443/page", id="other-port"),
        pytest.param("https://shop.example.evil.example/", id="suffix"),
    ],
)
def test_a_page_the_product_does_not_allow_gets_an_image_and_nothing_is_stored(
    system: System, shop_key: str, referer: str
) -> None:
    message = {"type": "track", "event": "E", "userId": "u"}
    assert_gif(*fallback(system, batch_body(shop_key, message), referer=referer))
    assert_gif(*pixel(system, referer=referer, k=shop_key, t="track", e="E", uid="u"))
    assert system.queued_jobs() == 0
    assert rejected(system, "auth_403") == 2
    system.work()
    assert system.events() == [] and system.dead_letters() == []


@pytest.mark.parametrize(
    "referer",
    [
        pytest.param("https://shop.example/pricing?plan=pro#faq", id="allowed"),
        pytest.param("HTTPS://Shop.Example:443/pricing", id="allowed-as-browsers-serialise"),
        pytest.param(None, id="no-referer"),
        pytest.param("android-app://com.example.mail/", id="not-a-web-origin"),
    ],
)
def test_an_allowed_page_or_no_referer_is_stored(
    system: System, shop_key: str, referer: str | None
) -> None:
    message = {"type": "track", "event": "From Batch", "userId": "u"}
    assert_gif(*fallback(system, batch_body(shop_key, message), referer=referer))
    assert_gif(*pixel(system, referer=referer, k=shop_key, t="track", e="Plain", uid="u"))
    system.work()
    assert sorted(e.name for e in system.events()) == ["From Batch", "Plain"]
    assert rejected(system, "auth_403") == 0


@pytest.mark.parametrize(
    ("referer", "origin"),
    [
        ("https://Shop.Example/a?b#c", "https://shop.example"),
        ("https://shop.example:443/", "https://shop.example"),
        ("http://shop.example:80/", "http://shop.example"),
        ("http://127.0.0.1:8000/t/1", "http://127.0.0.1:8000"),
        ("https://user:pw@shop.example:8443/", "https://shop.example:8443"),
        ("http://[::1]:8080/x", "http://[::1]:8080"),
        (
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop/popup.html",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
        ),
        (
            "moz-extension://0c5e7a1e-5d1b-4b4e-9a3f-1f2e3d4c5b6a/options.html",
            "moz-extension://0c5e7a1e-5d1b-4b4e-9a3f-1f2e3d4c5b6a",
        ),
        ("file:///home/me/page.html", None),
        ("https://shop.example:port/", None),
        ("", None),
        (None, None),
    ],
)
def test_the_referer_origin_is_serialised_as_browsers_send_origin(
    referer: str | None, origin: str | None
) -> None:
    assert origin_of(referer) == origin
