"""Matomo's Tracking HTTP API against a real collector, each test reading back what was stored.

Two kinds of proof: the reference page's own requests replayed byte for byte
(https://developer.matomo.org/api-reference/tracking-api: its example tracking request and
its bulk tracking example), and Matomo's official Node.js client, ``matomo-tracker``
2.2.4 from npm (github.com/matomo-org/matomo-nodejs-tracker), unmodified, driven by node
against the collector on a real port with its README's calls. No package ships
``matomo.js`` / ``piwik.js`` (every npm wrapper loads it from the Matomo server), so there
is no browser test.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from asgi_matomo import MatomoMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from sightline.model import EventType
from sightline.settings import Settings
from sightline.store.products import add_identifier
from tests.browser.live import LiveCollector
from tests.harness import System
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 5_0 like Mac OS X) AppleWebKit/534.46"

# The page's "Example Tracking Request" (the Matomo Mobile app tracking "View settings"),
# its values URL-encoded as the page says they must be.
EXAMPLE_REQUEST = (
    "/matomo.php?_cvar=%7B%221%22%3A%5B%22OS%22%2C%22iphone+5.0%22%5D%2C%222%22%3A%5B%22"
    "Matomo+Mobile+Version%22%2C%221.6.2%22%5D%2C%223%22%3A%5B%22Locale%22%2C%22en%3A%3Aen"
    "%22%5D%2C%224%22%3A%5B%22Num+Accounts%22%2C%222%22%5D%7D&action_name=View+settings"
    "&url=http%3A%2F%2Fmobileapp.piwik.org%2Fwindow%2Fsettings&idsite=8&rand=351459&h=18"
    "&m=13&s=3&rec=1&apiv=1&cookie=1&urlref=http%3A%2F%2Fiphone.mobileapp.piwik.org"
    "&_id=af344a398df83874&_idvc=19&res=320x480&"
)
# The page's "Example Bulk Tracking Call using CURL", byte for byte (curl -d: form media).
BULK_BODY = (
    b'{"requests":["?idsite=1&url=http://example.org&action_name=Test bulk log Pageview&rec=1",'
    b'"?idsite=1&url=http://example.net/test.htm&action_name=Another bulk page view&rec=1"],'
    b'"token_auth":"33dc3f2536d3025974cccb4b4d2d98f4"}'
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def register(system: System, site: str) -> None:
    """The product keeps its Matomo site number: pages already tagged work unchanged."""
    with system.engine.begin() as conn:
        add_identifier(conn, system.product.id, "matomo", site)


def test_the_reference_example_request(system: System) -> None:
    """https://developer.matomo.org/api-reference/tracking-api, "Example Tracking Request"."""
    register(system, "8")
    r = system.client.get(EXAMPLE_REQUEST, headers={"User-Agent": AGENT})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/gif" and "no-store" in r.headers["cache-control"]
    system.work()
    [event] = system.events()
    assert (event.type, event.name, event.dialect) == (EventType.PAGE, "View settings", "matomo")
    assert event.anonymous_id == "af344a398df83874" and event.user_id is None
    page = event.context["page"]
    assert page["url"] == "http://mobileapp.piwik.org/window/settings"
    assert (page["path"], page["title"]) == ("/window/settings", "View settings")
    assert page["referrer"] == "http://iphone.mobileapp.piwik.org"
    assert event.context["screen"] == {"width": 320, "height": 480}
    assert event.context["matomo"] == {"_idvc": "19"}
    assert event.properties == {
        "OS": "iphone 5.0",
        "Matomo Mobile Version": "1.6.2",
        "Locale": "en::en",
        "Num Accounts": "2",
    }
    assert event.context["userAgent"] == AGENT
    # The same request again (the browser retrying the image): the same rand, stored once.
    assert system.client.get(EXAMPLE_REQUEST).status_code == 200
    system.work()
    assert len(system.events()) == 1


def test_the_reference_bulk_example(system: System) -> None:
    """https://developer.matomo.org/api-reference/tracking-api, "Bulk Tracking Requests"."""
    register(system, "1")
    r = system.client.post("/matomo.php", content=BULK_BODY, headers=FORM)
    assert r.status_code == 200, r.text
    # Its token_auth is not this product's server key: no invalid_indices, as Matomo does.
    assert r.json() == {"status": "success", "tracked": 2, "invalid": 0}
    system.work()
    stored = {e.name: e for e in system.events()}
    assert set(stored) == {"Test bulk log Pageview", "Another bulk page view"}
    page = stored["Another bulk page view"].context["page"]
    assert (page["url"], page["path"]) == ("http://example.net/test.htm", "/test.htm")
    # The same bulk again (a retry): nothing stored twice within the window.
    system.client.post("/piwik.php", content=BULK_BODY, headers=FORM)
    system.work()
    assert len(system.events()) == 2


def test_events_links_downloads_pings_and_users(system: System) -> None:
    """The page's parameters for events (e_c/e_a/e_n/e_v), outlinks, downloads, heartbeats
    and user ids, as form POSTs (matomo.js's default) and GETs, with the write key as idsite."""
    key, at = system.write_key, datetime.now(UTC) - timedelta(hours=2)
    base = f"idsite={key}&rec=1&_id=0123456789abcdef&url=https%3A%2F%2Fshop.example%2Fcart"
    calls = [
        f"{base}&e_c=Videos&e_a=Play&e_n=Intro&e_v=12.5&rand=1&uid=ann&lang=fr-FR,fr;q=0.8",
        f"{base}&link=https%3A%2F%2Fout.example%2F&rand=2&cdt={int(at.timestamp())}",
        f"{base}&download=https%3A%2F%2Fshop.example%2Fa.pdf&rand=3&pv_id=AbC123",
        f"{base}&ping=1&rand=4&send_image=0",
    ]
    assert system.client.post("/matomo.php", content=calls[0], headers=FORM).status_code == 200
    assert system.client.get(f"/matomo.php?{calls[1]}").status_code == 200
    assert system.client.get(f"/piwik.php?{calls[2]}").status_code == 200
    assert system.client.post("/matomo.php", content=calls[3], headers=FORM).status_code == 204
    system.work()
    stored = {e.name: e for e in system.events()}
    assert set(stored) == {"Play", "Outlink", "Download", "engagement"}
    play = stored["Play"]
    assert play.type is EventType.TRACK and play.user_id == "ann"
    assert play.properties == {
        "category": "Videos",
        "action": "Play",
        "name": "Intro",
        "value": 12.5,
    }
    assert play.context["locale"] == "fr-FR"
    assert stored["Outlink"].properties == {"url": "https://out.example/"}
    assert abs(stored["Outlink"].timestamp - at.replace(microsecond=0)) < timedelta(seconds=1)
    assert stored["Download"].properties == {"url": "https://shop.example/a.pdf", "pv_id": "AbC123"}
    assert stored["engagement"].type is EventType.ENGAGEMENT
    assert stored["engagement"].context["page"]["path"] == "/cart"


INVALID = [
    ("e_c=Videos", "e_a"),  # an event without an action
    ("e_c=V&e_a=P&e_v=lots", "e_v"),  # a value that is not a number
    ("cdt=yesterday", "cdt"),  # not a time
    ("cdt=1500000000", "cdt"),  # older than 24 hours, without token_auth
]


def test_invalid_requests_get_matomos_400(system: System) -> None:
    for query, field in INVALID:
        url = f"/matomo.php?idsite={system.write_key}&rec=1&url=http%3A%2F%2Fa.example%2F&{query}"
        r = system.client.get(url)
        assert (r.status_code, r.headers["content-type"]) == (400, "image/gif")
        r = system.client.get(url + "&send_image=0")
        assert r.status_code == 400 and field in r.text
        debug = system.client.get("/debug" + url)
        assert debug.status_code == 400 and field in [e["field"] for e in debug.json()["errors"]]
    assert system.queued_jobs() == 0


def test_unknown_sites_and_requests_without_rec_store_nothing(system: System) -> None:
    r = system.client.get("/matomo.php?idsite=12345&rec=1&url=http%3A%2F%2Fa.example%2F")
    assert (r.status_code, r.headers["content-type"]) == (400, "image/gif")
    r = system.client.get(f"/matomo.php?idsite={system.write_key}&url=http%3A%2F%2Fa.example%2F")
    assert r.status_code == 200  # rec missing: answered, not tracked
    # The image tracker (<img src=".../matomo.php?idsite=..&rec=1">): the page is its Referer.
    image = f"/matomo.php?idsite={system.write_key}&rec=1&action_name=Home"
    assert (
        system.client.get(image, headers={"Referer": "https://a.example/home"}).status_code == 200
    )
    assert system.client.get("/matomo.php").status_code == 200  # Matomo's own page
    body: dict[str, Any] = {
        "requests": ["?idsite=999&rec=1", f"?idsite={system.write_key}&rec=1&url=x"]
    }
    r = system.client.post("/matomo.php", json=body)
    assert r.json() == {"status": "success", "tracked": 1, "invalid": 1}
    body["token_auth"] = system.server_key  # authenticated: which requests were invalid
    assert system.client.post("/matomo.php", json=body).json()["invalid_indices"] == [0]
    system.work()
    # The valid request of each bulk is the same content without rand, within the minute:
    # one event (the second bulk reads as a retry of the first); and the image's page view.
    stored = {e.name: e for e in system.events()}
    assert set(stored) == {"page_view", "Home"}
    assert stored["Home"].context["page"]["url"] == "https://a.example/home"
    assert system.dead_letters() == []


def test_token_auth_unlocks_cip_and_old_cdt(system: System) -> None:
    old = int((datetime.now(UTC) - timedelta(days=3)).timestamp())
    url = f"/matomo.php?idsite={system.write_key}&rec=1&url=http%3A%2F%2Fa.example%2F&cdt={old}"
    assert system.client.get(url + "&cip=203.0.113.9").status_code == 400
    ok = system.client.get(f"{url}&cip=203.0.113.9&token_auth={system.server_key}")
    assert ok.status_code == 200
    system.work()
    [event] = system.events()
    assert event.context["ip"] in ("203.0.113.9", "203.0.113.0")  # as the product's IP policy
    assert event.timestamp == datetime.fromtimestamp(old, UTC)
    # token_auth is never enqueued: the envelope holds the request without it
    debug = system.client.get(f"/debug{url}&token_auth={system.server_key}").json()
    assert "cdt" in debug["envelopes"][0]["body"]
    assert system.server_key not in json.dumps(debug["envelopes"])
    # without token_auth, cip is dropped (the request is kept, with the peer's address)
    recent = url.replace(f"cdt={old}", "rand=9")
    kept = system.client.get(f"/debug{recent}&cip=203.0.113.9").json()
    assert "cip" not in kept["envelopes"][0]["body"]


# -- the official Node.js client -------------------------------------------------------

NODE_SCRIPT = r"""
const MatomoTracker = require('matomo-tracker');
const [url, site, token] = process.argv.slice(1);
const matomo = new MatomoTracker(site, url + '/matomo.php');
let failed = null;
matomo.on('error', (err) => { failed = err; });
// README: "Track a request URL: either as a simple string ..."
matomo.track('http://example.com/track/this/url');
// "... or provide further options"
matomo.track({
  url: 'http://example.com/track/this/url',
  action_name: 'This will be shown in your dashboard',
  ua: 'Node.js v0.10.24',
  cvar: JSON.stringify({'1': ['custom variable name', 'custom variable value']}),
});
// "... or trackBulk" (the README's events, with token_auth: their cdt is years old)
const events = [{
  '_id': 'AA814767-7B1F-5C81-8F1D-8E47AD7D2982', 'cdt': '2018-03-22T02:32:22.867Z',
  'e_c': 'Buy', 'e_a': 'rightButton', 'e_v': '2', 'token_auth': token,
}, {
  '_id': 'AA814767-7B1F-5C81-8F1D-8E47AD7D2982', 'cdt': '2018-03-22T02:33:52.962Z',
  'e_c': 'Buy', 'e_a': 'leftButton', 'e_v': '4', 'token_auth': token,
}];
matomo.trackBulk(events, (answer) => {
  setTimeout(() => { console.log(failed === null ? answer : 'error ' + failed); }, 300);
});
"""


@pytest.fixture
def live(settings: Settings, redis_server: RedisServer) -> Iterator[LiveCollector]:
    with LiveCollector(settings, redis_server, origins=()) as collector:
        yield collector


def test_matomo_tracker_from_npm(live: LiveCollector) -> None:
    """matomo-tracker 2.2.4 (npm), its README's calls, against the collector on a port."""
    node = shutil.which("node")
    package = ROOT / "node_modules" / "matomo-tracker" / "package.json"
    if node is None or not package.exists():
        pytest.skip("node or node_modules/matomo-tracker missing (npm ci)")
    assert json.loads(package.read_text())["version"] == "2.2.4"
    server_key = live.product.server_keys[0]
    run = subprocess.run(
        [node, "-e", NODE_SCRIPT, live.url, live.write_key, server_key],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    answer: dict[str, Any] = json.loads(run.stdout)
    assert answer == {"status": "success", "tracked": 2, "invalid": 0}  # token per request
    stored = {m["stored"].name: m["stored"] for m in live.wait_for(count=4)}
    assert set(stored) >= {"rightButton", "leftButton", "This will be shown in your dashboard"}
    right = stored["rightButton"]
    assert right.properties == {"category": "Buy", "action": "rightButton", "value": 2.0}
    assert right.anonymous_id == "AA814767-7B1F-5C81-8F1D-8E47AD7D2982"
    assert right.timestamp == datetime(2018, 3, 22, 2, 32, 22, 867000, tzinfo=UTC)
    shown = stored["This will be shown in your dashboard"]
    assert shown.properties == {"custom variable name": "custom variable value"}
    assert shown.context["page"]["url"] == "http://example.com/track/this/url"


def test_shared_body_rules_and_cors(system: System) -> None:
    """Compression, size limits and CORS as on every ingest endpoint (collector.bodies, CORS)."""
    body = json.dumps({"requests": [f"?idsite={system.write_key}&rec=1&url=http://a.example/"]})
    r = system.client.post(
        "/matomo.php", content=gzip.compress(body.encode()), headers={"Content-Encoding": "gzip"}
    )
    assert r.json() == {"status": "success", "tracked": 1, "invalid": 0}
    too_big = b'{"requests": ["' + b"x" * (600 * 1024) + b'"]}'
    assert system.client.post("/matomo.php", content=too_big).status_code == 413
    shop = system.create_product("shop", origins=("https://shop.example",))
    form = f"idsite={shop.write_keys[0]}&rec=1&url=https%3A%2F%2Fshop.example%2F&send_image=0"
    allowed = {"Origin": "https://shop.example"} | FORM
    r = system.client.post("/matomo.php", content=form, headers=allowed)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    other = {"Origin": "https://evil.example"} | FORM
    assert system.client.post("/matomo.php", content=form, headers=other).status_code == 403
    system.work()
    assert len(system.events(product_id=shop.id)) == 1


def test_asgi_matomo_from_pypi(live: LiveCollector) -> None:
    """asgi-matomo 0.8.0 (PyPI, with matomo-core 0.3.4; github.com/spraakbanken/asgi-matomo):
    its ``MatomoMiddleware`` tracks each request an app serves with a form-encoded POST to
    ``matomo_url``, here the collector on a port; ``idsite`` is the site number the product
    registered, ``access_token`` the server key (so ``cip`` is believed)."""
    with live.engine.begin() as conn:
        add_identifier(conn, live.product.id, "matomo", "7")

    async def pricing(request: Request) -> Response:
        return PlainTextResponse("plans")

    app = MatomoMiddleware(
        cast(Any, Starlette(routes=[Route("/pricing", pricing)])),  # asgiref's ASGI types
        matomo_url=f"{live.url}/matomo.php",
        idsite=7,
        access_token=live.product.server_keys[0],
    )
    headers = {
        "User-Agent": AGENT,
        "Referer": "https://search.example/",
        "X-Forwarded-For": "198.51.100.4",
    }
    with TestClient(cast(Any, app)) as client:
        assert client.get("/pricing", headers=headers).text == "plans"
    [found] = live.wait_for(count=1)
    event = found["stored"]
    assert (event.type, event.name, event.dialect) == (EventType.PAGE, "/pricing", "matomo")
    assert event.context["page"]["url"] == "https://testserver:80/pricing"  # as it builds it
    assert event.context["ip"] == "198.51.100.4"  # cip, believed: token_auth is the server key
    assert event.properties["http_status_code"] == 200 and event.properties["http_method"] == "GET"
    assert event.properties["gt_ms"] > 0
    # asgi-matomo 0.8.0 sends the raw header bytes' repr as ua and urlref ("b'...'"): its
    # own defect, stored as sent (the parsed agent is still right).
    assert event.context["userAgent"] == f"b'{AGENT}'"
    assert event.context["ua"]["device_family"] == "iPhone"


def test_ecommerce_and_content_tracking(system: System) -> None:
    """The page's ecommerce (``idgoal=0``, ``ec_id``, ``revenue``, ``ec_st/tx/sh/dt``,
    ``ec_items``) and content tracking (``c_n``, ``c_p``, ``c_t``, ``c_i``) parameters."""
    base = f"/matomo.php?idsite={system.write_key}&rec=1&url=https%3A%2F%2Fshop.example%2F"
    items = "%5B%5B%22SKU1%22%2C%22Socks%22%2C%22Clothes%22%2C9.5%2C2%5D%5D"  # [["SKU1",...]]
    order = "&idgoal=0&ec_id=A100&revenue=24&ec_st=19&ec_tx=3&ec_sh=2&ec_dt=0"
    calls = [
        f"{base}{order}&ec_items={items}&rand=1&cid=fedcba9876543210",
        f"{base}&idgoal=0&revenue=19&ec_items={items}&rand=2",
        f"{base}&c_n=Banner&c_p=sale.png&c_t=https%3A%2F%2Fshop.example%2Fsale&rand=3",
        f"{base}&c_n=Banner&c_p=sale.png&c_i=click&rand=4",
    ]
    for call in calls:
        assert system.client.get(call).status_code == 200
    system.work()
    stored = {e.name: e for e in system.events()}
    completed = stored["Order Completed"]
    assert completed.anonymous_id == "fedcba9876543210"
    item = {"sku": "SKU1", "name": "Socks", "category": "Clothes", "price": 9.5, "quantity": 2}
    assert completed.properties == {
        "order_id": "A100",
        "revenue": 24.0,
        "subtotal": 19.0,
        "tax": 3.0,
        "shipping": 2.0,
        "discount": 0.0,
        "items": [item],
    }
    assert stored["Cart Updated"].properties == {"revenue": 19.0, "items": [item]}
    assert stored["Content Impression"].properties == {
        "name": "Banner",
        "piece": "sale.png",
        "target": "https://shop.example/sale",
    }
    interaction = stored["Content Interaction"].properties
    assert interaction == {"name": "Banner", "piece": "sale.png", "interaction": "click"}
