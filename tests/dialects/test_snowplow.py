"""Snowplow: snowplow-tracker (PyPI) with its POST and GET emitters against a real collector,
then the tracker protocol's rules one by one through the app, each read back from the store.

What a user changes (docs/dialects.md, "Snowplow"): the collector endpoint, and the app
id (``app_id`` / ``appId``), which is the product's write key or a Snowplow app id the
product registered.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import pytest
import sqlalchemy as sa
from snowplow_tracker import (
    Emitter,
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)

from collector.endpoints.pixel import GIF
from sightline.model import Event, EventType
from sightline.settings import Settings
from sightline.store.products import add_identifier
from sightline.store.schema import aliases
from tests.browser.live import LiveCollector
from tests.harness import System
from tests.servers import RedisServer

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
USER_CONTEXT = "iglu:com.acme/user_context/jsonschema/1-0-0"
URL = "https://shop.example/pricing?utm_source=newsletter&utm_medium=email"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"


def b64url(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


# --- snowplow-tracker, unmodified, on a real port ---------------------------------------


@pytest.fixture
def live(settings: Settings, redis_server: RedisServer) -> Iterator[LiveCollector]:
    with LiveCollector(settings, redis_server, origins=()) as collector:
        yield collector


@pytest.mark.parametrize("method", ["post", "get"])
def test_python_tracker(live: LiveCollector, method: str) -> None:
    assert version("snowplow-tracker") == "1.1.0"
    sent: list[dict[str, Any]] = []
    failed: list[Any] = []
    emitter = Emitter(
        live.url,
        method=method,  # type: ignore[arg-type]
        batch_size=10,
        on_success=sent.extend,
        on_failure=lambda count, events: failed.append(events),
    )
    session = str(uuid.uuid4())
    subject = (
        Subject()
        .set_user_id("user-7")
        .set_domain_user_id("duid-7")
        .set_domain_session_id(session)
        .set_domain_session_index(3)
        .set_screen_resolution(1920, 1080)
        .set_lang("fr-FR")
        .set_timezone("Europe/Paris")
        .set_useragent(AGENT)
    )
    tracker = Tracker("py-ns", emitter, subject=subject, app_id=live.write_key)
    true_time = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    ids = {
        "view": tracker.track(PageView(URL, "Pricing", "https://www.google.com/")),
        "struct": tracker.track(StructuredEvent("shop", "add-to-basket", "SKU-1", "quantity", 2)),
        "click": tracker.track(
            SelfDescribing(
                SelfDescribingJson(LINK_CLICK, {"targetUrl": "https://docs.example/"}),
                context=[SelfDescribingJson(USER_CONTEXT, {"plan": "pro"})],
            )
        ),
        "late": tracker.track(PageView(URL, "Later", true_timestamp=true_time.timestamp() * 1000)),
    }
    emitter.flush()
    assert failed == [] and len(sent) == 4

    stored = {e.message_id: e for e in live.events()}
    assert set(stored) == set(ids.values())  # eid is the message id
    view, struct, click, late = (stored[ids[k]] for k in ("view", "struct", "click", "late"))
    for event in stored.values():
        assert event.dialect == "snowplow"
        assert (event.user_id, event.anonymous_id, event.session_id) == (
            "user-7",
            "duid-7",
            session,
        )
        assert event.context["screen"] == {"width": 1920, "height": 1080}
        assert event.context["locale"] == "fr-FR" and event.context["timezone"] == "Europe/Paris"
        assert event.context["userAgent"] == AGENT and event.context["ip"] == "127.0.0.1"
        assert event.context["library"] == {
            "name": "snowplow",
            "version": "py-1.1.0",
            "namespace": "py-ns",
        }
        assert event.context["snowplow"]["session_index"] == 3
        assert event.context["snowplow"]["platform"] == "pc"

    assert (view.type, view.name) == (EventType.PAGE, "page_view")
    assert view.context["page"] == {
        "url": URL,
        "path": "/pricing",
        "search": "?utm_source=newsletter&utm_medium=email",
        "title": "Pricing",
        "referrer": "https://www.google.com/",
    }
    assert view.context["campaign"]["source"] == "newsletter"  # the worker read context.page
    assert (struct.type, struct.name) == (EventType.TRACK, "add-to-basket")
    assert struct.properties == {
        "category": "shop",
        "action": "add-to-basket",
        "label": "SKU-1",
        "property": "quantity",
        "value": 2.0,
    }
    assert (click.type, click.name) == (EventType.TRACK, "link_click")
    assert click.properties == {"targetUrl": "https://docs.example/"}
    assert click.context["snowplow_contexts"] == [{"schema": USER_CONTEXT, "data": {"plan": "pro"}}]
    assert click.context["snowplow"]["schema"] == LINK_CLICK

    # dtm and stm: the worker places the event (stm - dtm) before it was received.
    for event in (view, struct, click):
        assert event.sent_at is not None and event.original_timestamp is not None
        assert event.timestamp == event.received_at - (event.sent_at - event.original_timestamp)
        assert abs(event.timestamp - event.received_at) < timedelta(seconds=5)
    # ttm: the true timestamp, as given.
    assert late.timestamp == true_time and late.context["page"]["title"] == "Later"

    # The tracker sending the same events again (a retry): nothing is stored twice.
    emitter.send_events([dict(e) for e in sent])
    assert failed == []
    assert len(live.events()) == 4


# --- the protocol through the app -------------------------------------------------------


def post(system: System, *events: dict[str, Any], **kwargs: Any) -> Any:
    body = {"schema": PAYLOAD_DATA, "data": list(events)}
    return system.client.post(TP2, json=body, **kwargs)


def page_view(system: System, **fields: Any) -> dict[str, Any]:
    return {
        "e": "pv",
        "aid": system.write_key,
        "eid": str(uuid.uuid4()),
        "url": URL,
        "page": "Pricing",
        "p": "web",
        "tv": "js-4.10.1",
        **fields,
    }


def stored(system: System) -> dict[str, Event]:
    system.work()
    return {e.message_id: e for e in system.events()}


def test_post_answers_ok_and_stores_each_event(system: System) -> None:
    web_page = {"schema": WEB_PAGE, "data": {"id": str(uuid.uuid4())}}
    contexts = {"schema": CONTEXTS, "data": [web_page]}
    view = page_view(system, refr="https://www.google.com/", cx=b64url(contexts), duid="d1")
    ping = page_view(
        system, e="pp", pp_mix="0", pp_max="20", pp_miy="100", pp_may="640", co=json.dumps(contexts)
    )
    click = page_view(
        system,
        e="ue",
        ue_px=b64url({"schema": UNSTRUCT, "data": {"schema": LINK_CLICK, "data": {"id": "a"}}}),
    )
    r = post(system, view, ping, click, headers={"Origin": "https://shop.example"})
    assert r.status_code == 200 and r.text == "ok"
    assert "set-cookie" not in r.headers  # Snowplow's collector sets `sp`: this one never does
    events = stored(system)
    assert events[view["eid"]].context["page"]["id"] == web_page["data"]["id"]
    assert events[view["eid"]].context["page"]["referrer"] == "https://www.google.com/"
    assert events[view["eid"]].anonymous_id == "d1"
    assert events[ping["eid"]].type is EventType.ENGAGEMENT
    assert events[ping["eid"]].name == "page_ping"
    assert events[ping["eid"]].properties == {
        "pp_mix": 0,
        "pp_max": 20,
        "pp_miy": 100,
        "pp_may": 640,
    }
    assert events[ping["eid"]].context["page"]["id"] == web_page["data"]["id"]
    assert events[click["eid"]].name == "link_click"
    assert events[click["eid"]].properties == {"id": "a"}
    assert events[view["eid"]].context["library"]["version"] == "js-4.10.1"


def test_derived_timestamp(system: System) -> None:
    """dtm, stm, ttm as Snowplow derives them: a device clock one hour fast is corrected."""
    fast = datetime.now(UTC) + timedelta(hours=1)
    skewed = page_view(system, dtm=ms(fast - timedelta(seconds=30)), stm=ms(fast))
    true = page_view(system, dtm=ms(fast), stm=ms(fast), ttm="1700000000123")
    assert post(system, skewed, true).status_code == 200
    events = stored(system)
    event = events[skewed["eid"]]
    expected = event.received_at - timedelta(seconds=30)
    assert abs(event.timestamp - expected) < timedelta(milliseconds=2)
    assert event.context["clock"]["skew_ms"] > 3_000_000  # the client is an hour ahead
    assert events[true["eid"]].timestamp == datetime(2023, 11, 14, 22, 13, 20, 123000, UTC)


def test_structured_event_and_user_link(system: System) -> None:
    event = page_view(
        system, e="se", se_ca="video", se_ac="play", se_va="12.5", uid="u-1", duid="anon-1"
    )
    assert post(system, event).status_code == 200
    [play] = stored(system).values()
    assert (play.name, play.user_id, play.anonymous_id) == ("play", "u-1", "anon-1")
    assert play.properties == {"category": "video", "action": "play", "value": 12.5}
    [(alias, kind)] = system.sql(sa.select(aliases.c.alias, aliases.c.kind))
    assert (alias, kind) == ("anon-1", "anonymous")  # the anonymous id now names the user


def test_resending_a_payload_stores_nothing_twice(system: System) -> None:
    events = [page_view(system), page_view(system, e="se", se_ca="c", se_ac="a")]
    for _ in range(2):
        assert post(system, *events).status_code == 200
    assert len(stored(system)) == 2


def test_sp_anonymous_keeps_no_address_and_no_network_id(system: System) -> None:
    headers = {"SP-Anonymous": "*", "Cookie": "sp=nuid-cookie", "User-Agent": AGENT}
    event = page_view(system, ip="203.0.113.9", tnuid="nuid-param")
    r = post(system, event, headers=headers)
    assert r.status_code == 200 and "set-cookie" not in r.headers
    [anonymous] = stored(system).values()
    assert anonymous.context["ip"] is None and anonymous.anonymous_id is None
    assert "network_userid" not in anonymous.context["snowplow"]
    assert anonymous.context["snowplow"]["anonymous"] is True
    assert anonymous.context["userAgent"] == AGENT
    # Not even the envelope (queue, dead letters) carries the address.
    r = system.client.post(
        f"/debug{TP2}", json={"schema": PAYLOAD_DATA, "data": [event]}, headers=headers
    )
    [envelope] = r.json()["envelopes"]
    assert "ip" not in envelope and envelope["kind"] == "event+anonymous"
    assert "nuid" not in envelope["body"]  # the cookie was not read


def test_network_user_id_from_cookie_and_ip_param(system: System) -> None:
    event = page_view(system, ip="203.0.113.9", ua=AGENT)
    assert post(system, event, headers={"Cookie": "sp=nuid-cookie"}).status_code == 200
    [known] = stored(system).values()
    assert known.anonymous_id == "nuid-cookie"
    assert known.context["snowplow"]["network_userid"] == "nuid-cookie"
    assert known.context["ip"] == "203.0.113.9" and known.context["userAgent"] == AGENT


def test_get_pixel(system: System) -> None:
    for path in ("/i", "/ice.png"):
        event = page_view(system, cx=b64url({"schema": CONTEXTS, "data": []}))
        r = system.client.get(path, params=event)
        assert r.status_code == 200 and r.content == GIF
        assert r.headers["content-type"] == "image/gif"
        assert "no-store" in r.headers["cache-control"]
    assert {e.name for e in stored(system).values()} == {"page_view"}
    assert len(system.events()) == 2


def test_unknown_app_id_is_refused_and_nothing_stored(system: System) -> None:
    r = post(system, page_view(system), page_view(system, aid="not-a-product"))
    assert r.status_code == 401
    assert r.json()["errors"] == [{"field": "data[1].aid", "reason": "unknown key"}]
    r = post(system, {k: v for k, v in page_view(system).items() if k != "aid"})
    assert r.status_code == 401 and r.json()["errors"][0]["field"] == "data[0].aid"
    r = system.client.get("/i", params=page_view(system, aid="not-a-product"))
    assert r.status_code == 401 and r.content == GIF
    assert stored(system) == {}


def test_registered_app_id(system: System) -> None:
    with system.engine.begin() as conn:
        add_identifier(conn, system.product.id, "snowplow", "shop-web")
    assert post(system, page_view(system, aid="shop-web")).status_code == 200
    assert system.client.get("/i", params=page_view(system, aid="shop-web")).status_code == 200
    events = stored(system)
    assert len(events) == 2
    assert {e.product_id for e in events.values()} == {system.product.id}


def test_origin_the_product_does_not_allow(system: System) -> None:
    product = system.create_product("Shop", origins=("https://shop.example",))
    event = page_view(system, aid=product.write_keys[0])
    r = post(system, event, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = system.client.get("/i", params=event, headers={"Referer": "https://evil.example/x"})
    assert r.status_code == 403 and r.content == GIF
    assert post(system, event, headers={"Origin": "https://shop.example"}).status_code == 200


def test_bad_input(system: System) -> None:
    r = system.client.post(TP2, json={"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": []})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "schema"
    r = system.client.post(TP2, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = post(system, page_view(system, e="zz"), page_view(system, e="se"))
    assert r.status_code == 400
    assert {e["field"] for e in r.json()["errors"]} == {
        "data[0].e",
        "data[1].se_ca",
        "data[1].se_ac",
    }
    r = post(system, page_view(system, e="ue", ue_px="!!!"), page_view(system, dtm="yesterday"))
    assert {e["field"] for e in r.json()["errors"]} == {"data[0].ue_px", "data[1].dtm"}
    r = system.client.get("/i", params=page_view(system, e="ue", ue_pr="{}"))
    assert r.status_code == 400 and r.content == GIF
    r = system.client.get("/i", params=page_view(system, url="https://x.example/" + "a" * 9000))
    assert r.status_code == 413 and r.content == GIF
    r = system.client.post(TP2, content=b"{}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    r = system.client.post(TP2, content=b"x" * 1_000_001)
    assert r.status_code == 413
    assert stored(system) == {}


def test_one_bad_event_is_dead_lettered_the_rest_stored(system: System) -> None:
    good, bad = page_view(system), page_view(system, e="ue", ue_pr='{"schema": 1}')
    r = post(system, good, bad)
    assert r.status_code == 200
    assert list(stored(system)) == [good["eid"]]
    [letter] = system.dead_letters()
    assert "data[1].ue_pr" in letter.detail


def test_preflight_and_compressed_body(system: System) -> None:
    r = system.client.options(
        TP2,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, sp-anonymous",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "sp-anonymous" in r.headers["access-control-allow-headers"]
    body = json.dumps({"schema": PAYLOAD_DATA, "data": [page_view(system)]}).encode()
    r = system.client.post(
        TP2,
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200 and len(stored(system)) == 1


def test_debug_normalises_without_storing(system: System) -> None:
    event = page_view(system, e="se", se_ca="c", se_ac="a")
    r = system.client.post(f"/debug{TP2}", json={"schema": PAYLOAD_DATA, "data": [event]})
    assert r.status_code == 200 and r.json()["stored"] is False
    [record] = r.json()["records"]
    assert record["events"][0]["name"] == "a"
    r = system.client.get("/debug/i", params=page_view(system, aid="nope"))
    assert r.status_code == 401 and r.json()["message"] == "unknown key"
    assert stored(system) == {}


def test_screen_view_and_transactions(system: System) -> None:
    screen_view = "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0"
    screen = page_view(
        system,
        e="ue",
        p="mob",
        ue_pr=json.dumps(
            {"schema": UNSTRUCT, "data": {"schema": screen_view, "data": {"name": "Home"}}}
        ),
    )
    order = page_view(system, e="tr", tr_id="o-1", tr_tt="42.5", tr_cu="EUR")
    item = page_view(system, e="ti", ti_id="o-1", ti_sk="sku-9", ti_pr="21.25", ti_qu="2")
    assert post(system, screen, order, item).status_code == 200
    events = stored(system)
    assert (events[screen["eid"]].type, events[screen["eid"]].name) == (EventType.SCREEN, "Home")
    assert events[order["eid"]].name == "transaction"
    assert events[order["eid"]].properties == {"id": "o-1", "tt": "42.5", "cu": "EUR"}
    assert events[item["eid"]].name == "transaction_item"
    assert events[item["eid"]].properties == {"id": "o-1", "sk": "sku-9", "pr": "21.25", "qu": "2"}
