"""What the Segment family's SDKs send beyond the plain tracking API (issue 10).

Compressed bodies, analytics-next's short paths, RudderStack's empty ids, traits in
``context.traits``, a batch's own ``context``, error bodies SDKs can read, and
RudderStack's ``/v1/import``, ``/beacon/v1/batch`` and ``/pixel/v1/*``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from sightline.store.schema import user_attributes, users
from tests.harness import System, basic

GIF_TYPE = "image/gif"


def post(
    system: System, path: str, body: bytes, encoding: str | None = None, **headers: str
) -> Any:
    sent = {"Content-Type": "application/json", **basic(system.write_key), **headers}
    if encoding is not None:
        sent["Content-Encoding"] = encoding
    return system.client.post(path, content=body, headers=sent)


def batch_of(*messages: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"batch": list(messages), **extra}).encode()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("x-gzip", gzip.compress, id="x-gzip"),
        pytest.param("deflate", zlib.compress, id="deflate-zlib"),
        pytest.param(
            "deflate",
            lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS),
            id="deflate-raw",
        ),
    ],
)
def test_compressed_bodies_are_inflated(system: System, encoding: str, compress: Any) -> None:
    body = batch_of({"type": "track", "userId": "u1", "event": "Gz", "messageId": "gz-1"})
    response = post(system, "/v1/batch", compress(body), encoding)
    assert response.status_code == 200, response.text
    single = compress(json.dumps({"userId": "u1", "event": "One"}).encode())
    assert post(system, "/v1/track", single, encoding).status_code == 200
    system.work()
    assert sorted(e.name for e in system.events()) == ["Gz", "One"]


def test_a_small_body_inflating_past_the_limit_is_a_413(system: System) -> None:
    message = {"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 30_000}}
    body = gzip.compress(batch_of(*[message] * 20), 9)  # ~600 KB inflated
    assert len(body) < 10_000
    response = post(system, "/v1/batch", body, "gzip")
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert system.queued_jobs() == 0


def test_a_bomb_is_refused_for_its_ratio_in_bounded_memory(system: System) -> None:
    bomb = gzip.compress(b"{" + b" " * 400_000 + b"}", 9)  # a ratio of about 1000
    response = post(system, "/v1/batch", bomb, "gzip")
    assert response.status_code == 413
    assert "times its size" in response.json()["message"]


def test_an_unknown_encoding_is_a_415_naming_the_header(system: System) -> None:
    response = post(system, "/v1/track", b'{"userId":"u","event":"E"}', "br")
    assert response.status_code == 415
    answer = response.json()
    assert answer["code"] == "unsupported_media_type"
    assert answer["errors"][0]["field"] == "Content-Encoding"


def test_a_corrupt_gzip_stream_is_a_400(system: System) -> None:
    good = gzip.compress(b'{"userId":"u","event":"E"}')
    for body in (good[:-6], b"\x1f\x8bnot gzip at all", good + b"trailing"):
        response = post(system, "/v1/track", body, "gzip")
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["field"] == "Content-Encoding"


@pytest.mark.parametrize(
    ("letter", "body", "kind"),
    [
        ("t", {"userId": "u1", "event": "Short"}, "track"),
        ("p", {"anonymousId": "a1", "name": "Home"}, "page"),
        ("s", {"userId": "u1", "name": "Feed"}, "screen"),
        ("i", {"userId": "u1", "traits": {"plan": "pro"}}, "identify"),
        ("g", {"userId": "u1", "groupId": "g1"}, "group"),
        ("a", {"userId": "u1", "previousId": "old"}, "alias"),
    ],
)
def test_analytics_next_short_paths_take_text_plain(
    system: System, letter: str, body: dict[str, Any], kind: str
) -> None:
    response = post(
        system, f"/v1/{letter}", json.dumps(body).encode(), **{"Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    system.work()
    [event] = system.events()
    assert event.type.value == kind


def test_short_batch_path(system: System) -> None:
    body = batch_of({"type": "track", "userId": "u", "event": "B"})
    assert post(system, "/v1/b", body, **{"Content-Type": "text/plain"}).status_code == 200


def test_an_empty_id_is_absent_when_the_other_is_there(system: System) -> None:
    assert post(system, "/v1/track", b'{"userId":"","anonymousId":"a1","event":"X"}').is_success
    assert post(system, "/v1/track", b'{"userId":"u1","anonymousId":"","event":"Y"}').is_success
    response = post(system, "/v1/track", b'{"userId":"","anonymousId":"","event":"Z"}')
    assert response.status_code == 400
    system.work()
    ids = sorted((e.name, e.user_id, e.anonymous_id) for e in system.events())
    assert ids == [("X", None, "a1"), ("Y", "u1", None)]


def test_identify_traits_from_context_traits(system: System) -> None:
    body = {"userId": "u-ctx", "context": {"traits": {"plan": "pro", "email": "c@example.com"}}}
    server = basic(system.server_key)  # a server's: the e-mail is the user's
    assert post(system, "/v1/identify", json.dumps(body).encode(), **server).status_code == 200
    system.work()
    [user] = system.sql(sa.select(users))
    assert (user.external_id, user.email) == ("u-ctx", "c@example.com")
    attributes = {r.name: r.value for r in system.sql(sa.select(user_attributes))}
    assert attributes["plan"] == "pro"
    [event] = system.events()
    assert event.properties == {"plan": "pro", "email": "c@example.com"}


def test_a_batch_context_is_merged_under_each_message(system: System) -> None:
    body = batch_of(
        {"type": "track", "userId": "u", "event": "Own", "context": {"library": {"v": "2"}}},
        {"type": "track", "userId": "u", "event": "Bare"},
        context={"library": {"name": "sdk", "v": "1"}, "locale": "fr"},
    )
    assert post(system, "/v1/batch", body).status_code == 200
    system.work()
    by_name = {e.name: e.context for e in system.events()}
    assert by_name["Own"]["library"] == {"name": "sdk", "v": "2"}
    assert by_name["Bare"]["library"] == {"name": "sdk", "v": "1"}
    assert by_name["Own"]["locale"] == by_name["Bare"]["locale"] == "fr"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/track", b'{"userId":"u"}', 400, "invalid_input"),
        ("/v1/track", b"{", 400, "invalid_input"),
    ],
)
def test_error_bodies_carry_code_and_message(
    system: System, path: str, body: bytes, status: int, code: str
) -> None:
    response = post(system, path, body)
    assert response.status_code == status
    answer = response.json()
    assert answer["success"] is False
    assert answer["code"] == code
    assert answer["message"] == answer["error"]
    assert isinstance(answer["errors"], list)
    unauthorized = system.client.post("/v1/track", json={"userId": "u", "event": "E"})
    assert unauthorized.status_code == 401
    assert unauthorized.json()["code"] == "unauthorized"


def test_rudderstack_import_is_a_batch(system: System) -> None:
    body = batch_of({"type": "track", "userId": "u", "event": "Imported"})
    assert post(system, "/v1/import", body).status_code == 200
    system.work()
    assert [e.name for e in system.events()] == ["Imported"]


def test_rudderstack_beacon_takes_the_key_in_the_query_string(system: System) -> None:
    body = batch_of(
        {"type": "track", "anonymousId": "a", "userId": "", "event": "Beaconed"},
        sentAt="2026-01-01T00:00:00Z",
    )
    response = system.client.post(
        f"/beacon/v1/batch?writeKey={system.write_key}",
        content=body,
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert response.status_code == 200, response.text
    unknown = system.client.post("/beacon/v1/batch?writeKey=nope", content=body)
    assert unknown.status_code == 401
    system.work()
    assert [e.name for e in system.events()] == ["Beaconed"]


def test_rudderstack_pixel_maps_its_dotted_query_to_a_message(system: System) -> None:
    query = {
        "writeKey": system.write_key,
        "anonymousId": "anon-px",
        "event": "Opened",
        "messageId": "px-1",
        "context.page.url": "https://example.com/mail",
        "context.library.name": "RudderStack AMP SDK",
        "properties.campaign": "spring",
    }
    response = system.client.get("/pixel/v1/track?" + urlencode(query))
    assert (response.status_code, response.headers["content-type"]) == (200, GIF_TYPE)
    assert "no-store" in response.headers["cache-control"]
    page = {"writeKey": system.write_key, "anonymousId": "anon-px", "name": "Mail"}
    assert system.client.get("/pixel/v1/page?" + urlencode(page)).status_code == 200
    system.work()
    events = {e.type.value: e for e in system.events()}
    track = events["track"]
    assert (track.name, track.anonymous_id, track.message_id) == ("Opened", "anon-px", "px-1")
    assert track.properties == {"campaign": "spring"}
    assert track.context["page"] == {"url": "https://example.com/mail"}
    assert track.dialect == "native"
    assert events["page"].name == "Mail"


def test_rudderstack_pixel_is_always_a_gif(system: System) -> None:
    for query in ("writeKey=nope&anonymousId=a&event=E", f"writeKey={system.write_key}"):
        response = system.client.get("/pixel/v1/track?" + query)
        assert (response.status_code, response.headers["content-type"]) == (200, GIF_TYPE)
    system.work()
    assert system.events() == []
    [letter] = system.dead_letters()  # the valid key's message without an id
    assert "event" in letter.detail
