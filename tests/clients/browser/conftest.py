"""Chromium, a test site serving the SDK bundles from node_modules, and a real collector.

Nothing is fetched from the internet: the context routes every request, lets through
only 127.0.0.1 (the site and the collector) and records anything else as ``offsite``,
which each test asserts empty.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, Route, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute
from starlette.staticfiles import StaticFiles

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, WAIT_SECONDS, ServerThread

ROOT = Path(__file__).resolve().parents[3]
NODE_MODULES = ROOT / "node_modules"
BUNDLES = {
    # analytics-next's UMD build (global AnalyticsNext) and its lazily loaded chunks,
    # which it fetches from <cdnURL>/analytics-next/bundles/.
    "analytics-next": NODE_MODULES / "@segment" / "analytics-next" / "dist" / "umd",
    # RudderStack's v3 build with its plugins bundled in (global rudderanalytics).
    "rudderstack": NODE_MODULES
    / "@rudderstack"
    / "analytics-js"
    / "dist"
    / "npm"
    / "modern"
    / "bundled"
    / "umd",
}


@dataclass
class Site:
    url: str = ""
    pages: dict[str, str] = field(default_factory=dict)

    def add(self, html: str) -> str:
        path = f"/t/{uuid.uuid4().hex[:10]}/index.html"
        self.pages[path] = html
        return self.url + path


def site_app(site: Site) -> Starlette:
    async def page(request: Request) -> Response:
        html = site.pages.get(request.url.path)
        if html is None:
            return HTMLResponse("not found", status_code=404)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Mount("/vendor/analytics-next", StaticFiles(directory=BUNDLES["analytics-next"])),
            Mount("/analytics-next/bundles", StaticFiles(directory=BUNDLES["analytics-next"])),
            Mount("/vendor/rudderstack", StaticFiles(directory=BUNDLES["rudderstack"])),
            StarletteRoute("/t/{rest:path}", page),
        ]
    )


@pytest.fixture(scope="package")
def site() -> Iterator[Site]:
    for name, folder in BUNDLES.items():
        if not folder.is_dir():
            pytest.skip(f"{name} is not in node_modules (npm ci)")
    site = Site()
    with ServerThread(site_app(site)) as server:
        site.url = server.url
        yield site


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Offline:
    """Requests the page tried to send off this machine (aborted)."""

    offsite: list[str] = field(default_factory=list)


@pytest.fixture
def offline() -> Offline:
    return Offline()


@pytest.fixture
def context(browser: Browser, offline: Offline) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_SECONDS * 3 * 1000)

    def only_local(route: Route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            route.continue_()
        else:
            offline.offsite.append(url)
            route.abort()

    context.route("**/*", only_local)
    yield context
    with contextlib.suppress(Exception):
        context.close()
