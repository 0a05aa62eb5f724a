"""A real unpacked Manifest V3 extension sending through static/sightline-ext.js."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Error, Playwright, Worker

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, STATIC, WAIT_SECONDS, CaptureCollector

pytestmark = pytest.mark.browser

EXTENSION_SOURCE = Path(__file__).parent / "extension"


@pytest.fixture
def extension_dir(tmp_path: Path, collector: CaptureCollector) -> Path:
    """The test extension, with sightline-ext.js copied from static/ and its config."""
    target = tmp_path / "extension"
    shutil.copytree(EXTENSION_SOURCE, target)
    shutil.copy(STATIC / "sightline-ext.js", target / "sightline-ext.js")
    (target / "config.js").write_text(
        f"export const API_HOST = {json.dumps(collector.url)};\n"
        f"export const WRITE_KEY = {json.dumps(collector.write_key)};\n"
    )
    return target


@pytest.fixture
def extension_context(
    playwright: Playwright, tmp_path: Path, extension_dir: Path
) -> Iterator[BrowserContext]:
    # Extensions need a persistent profile and the new headless mode, which is what
    # headless=True launches with this Chromium (old headless is gone since 132).
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            f"--disable-extensions-except={extension_dir}",
            f"--load-extension={extension_dir}",
        ],
    )
    context.set_default_timeout(WAIT_SECONDS * 1000)
    yield context
    context.close()


@pytest.fixture
def service_worker(extension_context: BrowserContext) -> Worker:
    workers = extension_context.service_workers
    if workers:
        return workers[0]
    return extension_context.wait_for_event("serviceworker", timeout=WAIT_SECONDS * 1000)


def test_extension_install_and_custom_event(
    service_worker: Worker, collector: CaptureCollector
) -> None:
    extension_id = service_worker.url.split("/")[2]
    assert service_worker.url.startswith("chrome-extension://")

    [installed] = collector.wait_for(event="Extension Installed")
    service_worker.evaluate("self.sightlineTest.track('Custom Event', {source: 'test'})")
    [custom] = collector.wait_for(event="Custom Event")

    for message in (installed, custom):
        assert message["type"] == "track"
        assert message["context"]["extension"] == {"id": extension_id, "version": "1.2.3"}
        assert message["context"]["library"]["name"] == "sightline-ext.js"
        assert message["messageId"] and message["timestamp"]
    assert custom["properties"] == {"source": "test"}
    assert custom["anonymousId"] == installed["anonymousId"]
    assert custom["context"]["sessionId"] == installed["context"]["sessionId"]

    # the ids live in chrome.storage.local
    stored = service_worker.evaluate("chrome.storage.local.get('sl_aid')")
    assert stored["sl_aid"] == installed["anonymousId"]
    assert {b["origin"] for b in collector.batches()} == {f"chrome-extension://{extension_id}"}


def test_extension_identify_then_track(service_worker: Worker, collector: CaptureCollector) -> None:
    collector.wait_for(event="Extension Installed")
    service_worker.evaluate(
        """async () => {
            await self.sightlineTest.identify('ext-user', {plan: 'pro'});
            await self.sightlineTest.track('After Identify');
        }"""
    )
    [identify] = collector.wait_for(type="identify")
    [after] = collector.wait_for(event="After Identify")
    assert identify["userId"] == after["userId"] == "ext-user"
    assert identify["traits"] == {"plan": "pro"}


def test_extension_uninstall_recorded_by_the_pixel(
    service_worker: Worker, collector: CaptureCollector
) -> None:
    [installed] = collector.wait_for(event="Extension Installed")
    extension_id = service_worker.url.split("/")[2]
    with contextlib.suppress(Error):  # the worker goes away with its extension
        service_worker.evaluate("chrome.management.uninstallSelf()")
    [gone] = collector.wait_for(event="Extension Uninstalled")
    assert gone["anonymousId"] == installed["anonymousId"]
    assert gone["context"]["extension"] == {"id": extension_id, "version": "1.2.3"}
    [pixel] = collector.pixels()
    assert pixel["k"] == collector.write_key
