"""Umami's ``POST /api/send``: its documented sample, its clients' calls, end to end.

The sample payload of Umami's "Sending stats" page (https://umami.is/docs/api/sending-stats)
is replayed byte for byte, its ``your-website-id`` placeholder once as the page has it
(Umami's refusal) and once replaced by a registered website id. The other bodies are the
calls of Umami's tracker (umami-software/umami, src/tracker/index.js: v2.10's, which
encodes ``url`` and ``title`` and keeps the answer's text as its cache, and today's,
which sends full URLs, ``id`` and ``vid`` and keeps ``cache``) and of its Node client,
``@umami/node`` 0.4.0, run unmodified from node_modules against a live collector.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sightline.model import Event, EventType
from sightline.settings import Settings
from sightline.store.products import add_identifier
from sightline.store.schema import aliases, user_attributes, users
from tests.browser.live import LiveCollector
from tests.cli.test_cli import run
from tests.harness import System
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "node_modules" / "@umami" / "node"
WEBSITE = "9a9d6f4e-5f0b-4a8a-9d1c-5b7c0f3e2a11"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"
DOCS_SAMPLE = b"""{
  "payload": {
    "hostname": "your-hostname",
    "language": "en-US",
    "referrer": "",
    "screen": "1920x1080",
    "title": "dashboard",
    "url": "/",
    "website": "your-website-id",
    "name": "event-name",
    "data": {
      "foo": "bar"
    }
  },
  "type": "event"
}"""


def register(system: System, website: str = WEBSITE, product_id: str | None = None) -> None:
    with system.engine.begin() as conn:
        add_identifier(conn, product_id or system.product.id, "umami", website)


def send(
    system: System,
    body: dict[str, Any] | bytes,
    *,
    agent: str = AGENT,
    path: str = "/api/send",
    **headers: str,
) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return system.client.post(
        path,
        content=content,
        headers={"Content-Type": "application/json", "User-Agent": agent, **headers},
    )


def call(type: str = "event", **payload: Any) -> dict[str, Any]:
    return {"type": type, "payload": {"website": WEBSITE, **payload}}


def stored(system: System) -> list[Event]:
    system.work()
    return system.events()[::-1]


def test_the_docs_sample(system: System) -> None:
    register(system)
    refused = send(system, DOCS_SAMPLE)  # the placeholder names no website
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {"message": "Website not found.", "code": "bad-request", "status": 400}
    }
    assert system.queued_jobs() == 0
    r = send(system, DOCS_SAMPLE.replace(b"your-website-id", WEBSITE.encode()))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"cache", "sessionId", "visitId"}
    [event] = stored(system)
    assert (event.type, event.name, event.dialect) == (EventType.TRACK, "event-name", "umami")
    assert event.properties == {"foo": "bar"}
    assert event.context["page"] == {
        "url": "https://your-hostname/",
        "path": "/",
        "search": "",
        "title": "dashboard",
    }
    assert event.context["screen"] == {"width": 1920, "height": 1080}
    assert event.context["locale"] == "en-US"
    assert event.context["userAgent"] == AGENT
    assert (event.anonymous_id, event.session_id) == (answer["sessionId"], answer["visitId"])


def test_page_views_and_the_cache_token(system: System) -> None:
    register(system)
    # v2.10's tracker: url and referrer encodeURI'd, title encodeURIComponent'd.
    view = call(
        hostname="shop.example",
        screen="1280x720",
        language="de-DE",
        title="Preise%20%26%20Pl%C3%A4ne",
        url="/pricing?utm_source=newsletter",
        referrer="https://news.example/a%20b",
    )
    first = send(system, view)
    assert first.status_code == 200
    token = first.json()["cache"]
    again = send(system, call(url="/about", hostname="shop.example"), **{"x-umami-cache": token})
    # v2.10 keeps the whole answer text and sends that back.
    old = send(system, call(url="/team", hostname="shop.example"), **{"x-umami-cache": again.text})
    stranger = send(system, call(url="/"), agent=AGENT + " Edg/126.0")
    forged = send(system, call(url="/"), **{"x-umami-cache": "not a token"})
    events = stored(system)
    assert [e.type for e in events] == [EventType.PAGE] * 5
    assert {e.name for e in events} == {"page_view"}
    assert events[0].context["page"] == {
        "url": "https://shop.example/pricing?utm_source=newsletter",
        "path": "/pricing",
        "search": "?utm_source=newsletter",
        "title": "Preise & Pläne",
        "referrer": "https://news.example/a%20b",
    }
    assert events[0].context["campaign"]["source"] == "newsletter"
    visitor, visit = first.json()["sessionId"], first.json()["visitId"]
    assert [(e.anonymous_id, e.session_id) for e in events[:3]] == [(visitor, visit)] * 3
    assert old.json()["sessionId"] == visitor
    assert stranger.json()["sessionId"] != visitor
    assert forged.json()["sessionId"] == visitor  # an unreadable token is ignored


def test_todays_tracker_identify_and_visitor_id(system: System) -> None:
    register(system)
    vid = str(uuid.uuid4())
    base = {"hostname": "shop.example", "url": "https://shop.example/app", "vid": vid}
    assert send(system, call(**base)).status_code == 200
    r = send(system, call("identify", **base, id="user-42", data={"plan": "pro", "seats": 3}))
    assert r.status_code == 200
    assert send(system, call(**base, id="user-42", name="Upgrade", data={"to": "team"}))
    anonymous = send(system, call("identify", **base, data={"theme": "dark"}))
    assert anonymous.status_code == 200
    view, identify, upgrade, traits = stored(system)
    assert {e.anonymous_id for e in (view, identify, upgrade, traits)} == {vid}
    assert (identify.type, identify.user_id, identify.properties) == (
        EventType.IDENTIFY,
        "user-42",
        {"plan": "pro", "seats": 3},
    )
    assert (upgrade.type, upgrade.name, upgrade.user_id) == (EventType.TRACK, "Upgrade", "user-42")
    assert (traits.user_id, traits.properties) == (None, {"theme": "dark"})
    [user] = system.sql(sa.select(users).where(users.c.external_id == "user-42"))
    attributes = {
        row.name: row
        for row in system.sql(
            sa.select(user_attributes).where(user_attributes.c.user_id == user.id)
        )
    }
    assert set(attributes) == {"plan", "seats"}
    linked = system.sql(sa.select(aliases.c.alias).where(aliases.c.user_id == user.id))
    assert vid in {row.alias for row in linked}


def test_server_side_calls_carry_the_devices_time_and_agent(system: System) -> None:
    register(system)
    body = call(url="/x", timestamp=1_767_225_600, userAgent="Device/1.0", ip="203.0.113.9")
    assert send(system, body, agent="server/2.0").status_code == 200
    [event] = stored(system)
    assert event.timestamp.isoformat() == "2026-01-01T00:00:00+00:00"
    assert event.context["userAgent"] == "Device/1.0"


def test_the_write_key_is_a_website(system: System) -> None:
    body = {"type": "event", "payload": {"website": system.write_key, "url": "/"}}
    assert send(system, body).status_code == 200
    assert [e.product_id for e in stored(system)] == [system.product.id]


def test_an_origin_the_product_does_not_allow_is_umamis_403(system: System) -> None:
    shop = system.create_product("Shop", origins=("https://shop.example",))
    register(system, product_id=shop.id)
    r = send(system, call(url="/"), Origin="https://evil.example")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    assert send(system, call(url="/"), Origin="https://shop.example").status_code == 200
    assert len(stored(system)) == 1


# Refused at the edge, before any storage: one database is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"type": "pageview", "payload": {"website": WEBSITE}}, "type", id="type"),
        pytest.param({"type": "event", "payload": {"url": "/"}}, "payload.website", id="website"),
        pytest.param({"type": "event"}, "payload", id="no-payload"),
        pytest.param(call("identify"), "payload.data", id="identify-without-data"),
        pytest.param(call(data=["x"]), "payload.data", id="data-type"),
        pytest.param(call(timestamp=10**12), "payload.timestamp", id="timestamp-ms"),
        pytest.param(call(name="x" * 256), "payload.name", id="long-name"),
        pytest.param(b'{"type": "event", "payload": {', "$", id="not-json"),
    ],
)
def test_invalid_calls_are_400_naming_the_field(
    system: System, body: dict[str, Any] | bytes, field: str
) -> None:
    register(system)
    r = send(system, body)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert system.queued_jobs() == 0


def test_debug_shows_the_records_and_stores_nothing(system: System) -> None:
    register(system)
    r = send(system, call(name="Signup", url="/"), path="/debug/api/send")
    assert r.status_code == 200, r.text
    [records] = r.json()["records"]
    assert [e["name"] for e in records["events"]] == ["Signup"]
    assert send(system, DOCS_SAMPLE, path="/debug/api/send").status_code == 401
    assert system.queued_jobs() == 0


# -- @umami/node, Umami's own client, against a live collector ---------------------------

NODE_SCRIPT = """
import { Umami } from '@umami/node';
const [hostUrl, websiteId] = process.argv.slice(1);
const umami = new Umami({ websiteId, hostUrl, userAgent: 'Mozilla/5.0 (node) Shop/1.0' });
const answers = [];
for (const response of [
  await umami.track({ url: '/home', title: 'Home', hostname: 'shop.example',
                      referrer: 'https://search.example/?q=shop', language: 'en-GB',
                      screen: '390x844' }),
  await umami.track('signup', { plan: 'pro', seats: 3 }),
  await umami.identify({ company: 'Acme' }),
]) answers.push([response.status, await response.json()]);
console.log(JSON.stringify(answers));
"""


@pytest.fixture
def live(settings: Settings, redis_server: RedisServer) -> Iterator[LiveCollector]:
    with LiveCollector(settings, redis_server, origins=()) as collector:
        yield collector


def test_the_node_client(live: LiveCollector) -> None:
    node = shutil.which("node")
    if node is None or not NODE_CLIENT.is_dir():
        pytest.skip("node or node_modules/@umami/node missing (npm ci)")
    assert json.loads((NODE_CLIENT / "package.json").read_text())["version"] == "0.4.0"
    with live.engine.begin() as conn:
        add_identifier(conn, live.product.id, "umami", WEBSITE)
    run = subprocess.run(
        [node, "--input-type=module", "-e", NODE_SCRIPT, live.url, WEBSITE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout)
    assert [status for status, _ in answers] == [200, 200, 200]
    view, signup, identify = live.events()
    assert (view.type, view.name) == (EventType.PAGE, "page_view")
    assert view.context["page"] == {
        "url": "https://shop.example/home",
        "path": "/home",
        "search": "",
        "title": "Home",
        "referrer": "https://search.example/?q=shop",
    }
    assert view.context["screen"] == {"width": 390, "height": 844}
    assert view.context["locale"] == "en-GB"
    assert view.context["userAgent"] == "Mozilla/5.0 (node) Shop/1.0"
    assert (signup.type, signup.name, signup.properties) == (
        EventType.TRACK,
        "signup",
        {"plan": "pro", "seats": 3},
    )
    assert (identify.type, identify.properties) == (EventType.IDENTIFY, {"company": "Acme"})
    # No cookie, no cache token (the Node client keeps none): one visitor, by address and agent.
    assert len({view.anonymous_id, signup.anonymous_id, identify.anonymous_id}) == 1
    assert view.anonymous_id == answers[0][1]["sessionId"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_over_the_products_rate_limit_is_a_429(system: System) -> None:
    register(system)
    run(system, "products", "limits", system.product.id, "--per-key", "2")
    assert system.client.portal is not None
    system.client.portal.call(system.client.app_state["directory"].reload)
    statuses = [send(system, call(url="/")).status_code for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
