"""The dashboard (``/ui``) in a real Chromium against a real ``sightline up``.

One ``sightline up`` (embedded Redis, SQLite, its workers, the collector) and one browser
for the whole module; the tests run in order on one logged-in page, as a person would:
log in from the printed link, see the empty state, send events (httpx, as curl would)
and see them live, open one, watch the traffic change, look a user and an account up,
replay a dead letter, reveal a server key; then every control is reached with the
keyboard, and a 360 px wide screen never scrolls sideways.

``SIGHTLINE_SCREENSHOTS=1`` writes the screenshots the README shows to ``docs/img/``
(otherwise to a temporary folder, so a test run leaves the checkout alone).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS
from tests.servers import free_port
from tests.test_up import cli, read_until, sightline

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
LIVE_SECONDS = 2.0
"""An event sent must be in the live list within this (issue 13's proof)."""
COLD_SECONDS = 10.0
WIDE = {"width": 1100, "height": 760}
NARROW = {"width": 360, "height": 740}
VIEWS = ("live", "traffic", "people", "deadletters", "products")


class Up:
    def __init__(
        self, data_dir: Path, base: str, write_key: str, server_key: str, link: str
    ) -> None:
        self.data_dir = data_dir
        self.base = base
        self.write_key = write_key
        self.server_key = server_key
        self.link = link
        self.client = httpx.Client(
            base_url=base, auth=(write_key, ""), headers={"User-Agent": CHROME_UA}, timeout=10
        )

    def send(self, path: str, body: dict[str, Any], server: bool = False) -> httpx.Response:
        """Sent with the write key, or (``server``) the server key as a backend would."""
        auth = (self.server_key, "") if server else httpx.USE_CLIENT_DEFAULT
        response = self.client.post(path, json=body, auth=auth)
        assert response.status_code == 200, response.text
        return response

    def page_view(self, path: str, anonymous_id: str, **extra: Any) -> None:
        url = f"https://shop.example{path}?utm_source=newsletter&utm_campaign=winter"
        self.send(
            "/v1/page",
            {
                "anonymousId": anonymous_id,
                "name": path.strip("/").title() or "Home",
                "context": {
                    "page": {"path": path, "url": url, "referrer": "https://news.example/"}
                },
                **extra,
            },
        )


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data_dir, port = tmp_path_factory.mktemp("ui") / "data", free_port()
    with sightline(data_dir, "up", "--port", str(port)) as (process, lines):
        write_key = read_until(process, lines, r"write key").split()[-1]
        server_key = read_until(process, lines, r"server key").split()[-1]
        link = read_until(process, lines, r"dashboard .*http://").split()[-1]
        read_until(process, lines, r"Collector on")
        drain = threading.Thread(target=_drain, args=(process,), daemon=True)
        drain.start()
        up = Up(data_dir, f"http://127.0.0.1:{port}", write_key, server_key, link)
        yield up
        up.client.close()


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading the status lines so the pipe never fills."""
    assert process.stdout is not None
    for _line in process.stdout:
        pass


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("SIGHTLINE_SCREENSHOTS"):
        folder = REPO / "docs" / "img"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def page(browser: Browser, up: Up) -> Iterator[Page]:
    context = browser.new_context(viewport=WIDE, color_scheme="light")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def go(page: Page, view: str) -> None:
    page.locator(f"nav a[href='#{view}']").click()
    expect(page.locator(f"#view-{view}")).to_be_visible()


def settle(page: Page) -> None:
    """Wait until the page has no API request in flight (and has rendered the answers)."""
    page.wait_for_selector("body[data-pending='0']", state="attached")
    page.wait_for_timeout(50)


# -- the tests, in order ---------------------------------------------------------------


def test_login_from_the_printed_link_shows_what_to_paste(page: Page, up: Up, shots: Path) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/login\?token=\S+", up.link), up.link
    page.goto(up.link)
    assert page.url == up.base + "/ui"
    expect(page.locator("#view-live")).to_be_visible()
    empty = page.locator("#empty")
    expect(empty).to_be_visible()
    tag = f'<script defer src="{up.base}/s.js" data-key="{up.write_key}"></script>'
    expect(page.locator("#empty-tag")).to_have_text(tag)
    expect(page.locator("#empty-curl")).to_contain_text(
        f"curl -u {up.write_key}: {up.base}/v1/track"
    )
    # The session is HttpOnly: the page's script cannot read it.
    assert page.evaluate("document.cookie") == ""
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The link logged in once: a second visit is refused.
    assert httpx.get(up.link, timeout=10).status_code == 401
    page.screenshot(path=shots / "ui-empty.png")


def test_sent_events_appear_live_within_two_seconds(page: Page, up: Up, shots: Path) -> None:
    rows = page.locator("#live-table tbody tr")
    expect(page.locator("#live-status")).to_contain_text("Live")
    for i, path in enumerate(("/", "/pricing", "/docs")):
        # The first event is the workers' first batch (they load the GeoIP database and
        # the user-agent parser then): it may take longer. Every later one: 2 s.
        budget = COLD_SECONDS if i == 0 else LIVE_SECONDS
        started = time.monotonic()
        up.page_view(path, f"anon-{i}")
        expect(rows.filter(has_text=path).first).to_be_visible(timeout=budget * 1000)
        print(f"{path}: in the live list {time.monotonic() - started:.2f} s after it was sent")
    expect(page.locator("#empty")).to_be_hidden()
    up.send(
        "/v1/identify",
        {
            "userId": "ada",
            "anonymousId": "anon-1",
            "traits": {"email": "ada@shop.example", "plan": "pro"},
        },
        server=True,  # the shop's backend: e-mails and account trees are server-only
    )
    up.send(
        "/v1/group", {"userId": "ada", "groupId": "acme", "traits": {"name": "Acme"}}, server=True
    )
    # Stored before the next group call: the user's account is the last one stored.
    expect(rows.filter(has_text="group")).to_have_count(1, timeout=LIVE_SECONDS * 1000)
    up.send(
        "/v1/group",
        {
            "userId": "ada",
            "groupId": "acme-eu",
            "traits": {"name": "Acme Europe", "parentId": "acme"},
        },
        server=True,
    )
    up.send("/v1/track", {"userId": "ada", "event": "Plan Upgraded", "properties": {"plan": "pro"}})
    expect(rows.filter(has_text="Plan Upgraded")).to_be_visible(timeout=LIVE_SECONDS * 1000)
    page.screenshot(path=shots / "ui-live.png")


def test_an_event_opens_with_its_record_context_and_enrichment(
    page: Page, up: Up, shots: Path
) -> None:
    button = page.locator("#live-table tbody tr", has_text="/pricing").get_by_role("button")
    button.click()
    detail = page.locator("#event-detail")
    expect(detail).to_be_visible()
    expect(page.locator("#event-title")).to_be_focused()
    expect(detail).to_contain_text("Canonical record")
    expect(detail).to_contain_text("anon-1")
    expect(detail.locator("pre").nth(1)).to_contain_text('"path": "/pricing"')  # context
    enrichment = detail.locator("pre").nth(2)
    expect(enrichment).to_contain_text('"browser_family": "Chrome"')
    expect(enrichment).to_contain_text('"name": "winter"')
    expect(detail).to_contain_text("Dead letters keep theirs")  # what the API says of envelopes
    page.screenshot(path=shots / "ui-event.png")
    page.locator("#event-close").click()
    expect(detail).to_be_hidden()
    expect(button).to_be_focused()


def _top_pages(page: Page) -> dict[str, int]:
    rows = page.locator("#breakdown-page tbody tr")
    found: dict[str, int] = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("th, td").all_inner_texts()
        if len(cells) == 3:
            found[cells[0].strip()] = int(cells[2].replace(",", ""))
    return found


def test_traffic_chart_and_top_pages_change(page: Page, up: Up, shots: Path) -> None:
    go(page, "traffic")
    views = page.locator("#totals .card", has_text="Page views").locator("dd")
    expect(views).to_have_text("3")
    expect(page.locator("#chart canvas")).to_be_visible()
    assert _top_pages(page) == {"/": 1, "/pricing": 1, "/docs": 1}
    expect(page.locator("#breakdown-utm_campaign")).to_contain_text("winter")
    expect(page.locator("#breakdown-browser")).to_contain_text("Chrome")
    series_before = page.locator("#series-table tbody").text_content()

    for i in range(4):
        up.page_view("/pricing", f"anon-new-{i}")
    up.page_view("/checkout", "anon-new-0")
    deadline = time.monotonic() + 10
    while True:
        page.locator("#traffic-refresh").click()
        try:
            expect(views).to_have_text("8", timeout=1000)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the new page views never showed"
    top = _top_pages(page)
    assert top["/pricing"] == 5 and top["/checkout"] == 1
    assert next(iter(top)) == "/pricing", "the most viewed page comes first"
    assert page.locator("#series-table tbody").text_content() != series_before, "the chart's data"
    expect(page.locator("#chart-caption")).to_contain_text("8 page views")
    page.screenshot(path=shots / "ui-traffic.png", full_page=True)


def test_traffic_refreshes_itself_as_events_arrive(page: Page, up: Up) -> None:
    """No click, no reload: the live stream says events were stored, the view asks again."""
    views = page.locator("#totals .card", has_text="Page views").locator("dd")
    expect(views).to_have_text("8")
    page.evaluate("window.notReloaded = true")
    up.page_view("/refreshed", "anon-refresh-0")
    up.page_view("/refreshed", "anon-refresh-1")
    # Refreshes are at most 5 s apart; the worker stores within a second or two.
    expect(views).to_have_text("10", timeout=30_000)
    expect(page.locator("#breakdown-page")).to_contain_text("/refreshed")
    assert page.evaluate("window.notReloaded") is True
    # Another view closes the traffic stream; coming back opens it again.
    go(page, "live")
    go(page, "traffic")
    up.page_view("/refreshed", "anon-refresh-2")
    expect(views).to_have_text("11", timeout=30_000)


def test_a_user_and_an_account_with_their_identity_graph(page: Page, up: Up, shots: Path) -> None:
    go(page, "people")
    page.locator("#people-table").get_by_role("button", name="ada").click()
    profile = page.locator("#profile")
    expect(page.locator("#profile-title")).to_have_text("User ada")
    expect(profile.locator(".tree").first).to_contain_text("anon-1 (anonymous)")
    expect(profile).to_contain_text("ada@shop.example")
    page.screenshot(path=shots / "ui-user.png", full_page=True)
    expect(profile.locator(".tree").nth(1)).to_contain_text("Acme")
    page.locator("#people-kind").select_option("accounts")
    expect(page.locator("#people-table tbody tr")).to_have_count(2)
    page.locator("#people-table").get_by_role("button", name="acme-eu").click()
    expect(page.locator("#profile-title")).to_have_text("Account Acme Europe")
    tree = profile.locator(".tree").first
    expect(tree.get_by_role("button", name="Acme (acme)")).to_be_visible()
    expect(tree.locator("[aria-current]")).to_have_text("Acme Europe (acme-eu)")
    expect(profile.get_by_role("button", name="ada")).to_be_visible()
    page.screenshot(path=shots / "ui-account.png", full_page=True)
    newest = profile.get_by_role("region", name="Newest events")
    first = newest.get_by_role("button").first
    name = first.inner_text()
    first.click()  # the event opens beside the live list
    expect(page.locator("#view-live")).to_be_visible()
    expect(page.locator("#event-title")).to_contain_text(name)
    expect(page.locator("#event-title")).to_be_focused()
    go(page, "people")
    page.locator("#people-kind").select_option("users")


def test_a_dead_letter_is_listed_and_replayed(page: Page, up: Up, shots: Path) -> None:
    answer = up.client.post(
        "/v1/batch",
        json={"batch": [{"type": "track", "userId": "ada", "event": "Fine"}, {"type": "track"}]},
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    go(page, "deadletters")
    rows = page.locator("#dl-table tbody tr[data-id]")
    deadline = time.monotonic() + 10
    while rows.count() == 0:
        assert time.monotonic() < deadline, "the dead letter never showed"
        page.locator("#dl-all").check()
        page.locator("#dl-all").uncheck()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("schema")
    expect(rows.first).to_contain_text("batch[1]")
    rows.first.locator("summary").click()
    expect(rows.first.locator("pre")).to_contain_text('"dialect": "native"')
    page.screenshot(path=shots / "ui-deadletters.png")
    letter_id = rows.first.get_attribute("data-id")
    rows.first.get_by_role("button", name=f"Replay dead letter {letter_id}").click()
    expect(page.locator("#dl-status")).to_have_text("1 dead letter sent back to the workers.")
    # The replayed letter is marked; the worker refuses it again, with the same reason.
    page.locator("#dl-all").check()
    replayed = page.locator(f"#dl-table tbody tr[data-id='{letter_id}']")
    expect(replayed).to_contain_text("replayed")
    page.locator("#dl-all").uncheck()


def test_products_show_keys_and_settings_and_reveal_the_server_key_on_demand(
    page: Page, up: Up, shots: Path
) -> None:
    go(page, "products")
    product = page.locator(".product").first
    expect(product).to_contain_text(up.write_key)
    expect(product).to_contain_text("any origin")
    expect(product).to_contain_text(re.compile(r"(full|truncated|none): (kept|not kept|truncated)"))
    expect(product).to_contain_text(re.compile(r"(flag|drop): (stored|not stored)"))
    assert up.server_key not in page.content()
    reveal = product.get_by_role("button", name="Reveal server key")
    reveal.click()
    expect(product).to_contain_text(up.server_key)
    expect(product.get_by_role("button", name="Hide server key")).to_have_attribute(
        "aria-expanded", "true"
    )
    page.screenshot(path=shots / "ui-products.png")
    product.get_by_role("button", name="Hide server key").click()
    assert up.server_key not in page.content()


FOCUSABLE = (
    "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), "
    "summary, [tabindex='0']"
)
MARK_VISIBLE_CONTROLS = """(selector) => {
  const found = [];
  document.querySelectorAll(selector).forEach((el, i) => {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) return;
    if (!el.checkVisibility({visibilityProperty: true, contentVisibilityAuto: true})) return;
    el.dataset.kb = String(i);
    found.push(String(i));
  });
  return found;
}"""
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  return {kb: el.dataset.kb || null, tag: el.tagName, text: (el.textContent || '').slice(0, 40),
          outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2};
}"""


def _tab_through(page: Page, view: str) -> None:
    """Tab from the top of the page: every visible control is reached, each with a
    visible focus ring."""
    page.evaluate("document.querySelectorAll('[data-kb]').forEach(e => delete e.dataset.kb)")
    controls = set(page.evaluate(MARK_VISIBLE_CONTROLS, FOCUSABLE))
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.locator("body").focus()
    reached: set[str] = set()
    for _ in range(len(controls) + 10):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:  # past the last control: the next Tab starts from the top
            continue
        assert focused["outline"], f"{view}: no visible focus on {focused}"
        if focused["kb"] is not None:
            reached.add(focused["kb"])
        if reached == controls:
            break
    missing = [
        page.evaluate(f"document.querySelector('[data-kb=\"{kb}\"]').outerHTML.slice(0, 120)")
        for kb in controls - reached
    ]
    assert not missing, f"{view}: never reached {missing}"


def test_the_keyboard_reaches_every_control(page: Page, up: Up) -> None:
    page.goto(up.base + "/ui#live")
    expect(page.locator("#view-live")).to_be_visible()
    settle(page)
    page.locator("#live-table tbody tr").first.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#event-title")).to_be_focused()
    for view in VIEWS:
        # Move by keyboard: focus the section's link and press Enter.
        page.locator(f"nav a[href='#{view}']").focus()
        page.keyboard.press("Enter")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        expect(page.locator(f"#view-{view} h1")).to_be_focused()
        if view == "people":
            page.locator("#people-table").get_by_role("button", name="ada").press("Enter")
            expect(page.locator("#profile")).to_be_visible()
        settle(page)
        _tab_through(page, view)
    errors = page.errors  # type: ignore[attr-defined]
    assert errors == [], errors


def test_a_narrow_screen_never_scrolls_sideways(page: Page, up: Up, shots: Path) -> None:
    page.set_viewport_size(NARROW)
    for view in VIEWS:
        page.goto(f"{up.base}/ui#{view}")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        settle(page)
        if view == "live":
            page.locator("#live-table tbody tr").first.get_by_role("button").click()
            expect(page.locator("#event-detail")).to_be_visible()
        if view == "people":
            page.locator("#people-table").get_by_role("button", name="ada").click()
            expect(page.locator("#profile")).to_be_visible()
        if view == "deadletters":
            page.locator("#dl-all").check()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW["width"], f"{view}: {width} px wide"
        if view in ("live", "traffic"):
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=shots / f"ui-narrow-{view}.png")
    page.set_viewport_size(WIDE)


def test_a_read_key_logs_in_through_the_form_and_reads_its_product_only(
    browser: Browser, up: Up
) -> None:
    (product,) = (
        line.split()[0]
        for line in cli(up.data_dir, "products", "list").splitlines()
        if line.startswith("prd_")
    )
    created = cli(up.data_dir, "tokens", "create", "--product", product, "--name", "ui")
    token = created.split()[-1]
    assert token.startswith("slr_"), created
    context = browser.new_context(viewport=WIDE)
    try:
        page = context.new_page()
        page.goto(up.base + "/ui")
        expect(page.locator("#view-login")).to_be_visible()
        expect(page.locator("#nav")).to_be_hidden()
        page.get_by_label("Read key or admin token").fill(token)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#view-live")).to_be_visible()
        expect(page.locator("#product option")).to_have_count(1)  # its product, not "all"
        expect(page.locator("#live-table tbody tr").first).to_be_visible()
        go(page, "deadletters")
        expect(page.locator("#dl-replay-all")).to_be_disabled()  # replaying is an admin's
        go(page, "products")
        expect(page.get_by_role("button", name="Reveal server key")).to_have_count(0)
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("#view-login")).to_be_visible()
        assert context.cookies() == []
    finally:
        context.close()
