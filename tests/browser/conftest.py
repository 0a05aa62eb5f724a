"""Fixtures for the browser tests: a real headless Chromium, a test site and a collector.

``collector`` is what the snippet sends to (see ``support.py``); override it to run these
tests against the real collector.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_SECONDS,
    Capture,
    CaptureCollector,
    Collector,
    PageFactory,
    ServerThread,
    Site,
    capture_app,
    site_app,
)


@pytest.fixture(scope="session")
def capture_server() -> Iterator[tuple[Capture, str]]:
    capture = Capture()
    with ServerThread(capture_app(capture)) as server:
        yield capture, server.url


@pytest.fixture
def collector(capture_server: tuple[Capture, str]) -> CaptureCollector:
    """The collector the snippet sends to: ``collector.url`` is its base URL."""
    capture, url = capture_server
    return CaptureCollector(capture=capture, url=url)


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    site = Site(url="")
    with ServerThread(site_app(site)) as server:
        site.url = server.url
        yield site


@pytest.fixture
def make_page(site: Site, collector: Collector) -> PageFactory:
    """``make_page(body, head=..., stub=..., **data_attrs)`` -> the URL of a page with the
    paste-in tag for this test's write key (``data_hash="true"`` -> ``data-hash="true"``)."""

    def make(body: str = "", *, head: str = "", stub: str = "", **attrs: str) -> str:
        options = "".join(
            f' data-{name.removeprefix("data_").replace("_", "-")}="{value}"'
            for name, value in attrs.items()
        )
        tag = (
            f'<script defer src="{collector.url}/s.js" data-key="{collector.write_key}"'
            f"{options}></script>"
        )
        return site.add(
            "<!doctype html><html><head><meta charset=utf-8><title>Test page</title>"
            f"{stub}{head}{tag}</head><body>{body}</body></html>"
        )

    return make


# --- Chromium --------------------------------------------------------------------------


# Package scope: Playwright's sync API keeps an event loop running in this thread
# while it lives; it must be gone before tests outside tests/browser run their own.
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


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_SECONDS * 1000)
    yield context
    with contextlib.suppress(Exception):
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
