"""One bad message in the snippet's queue no longer costs the good ones (issue 10).

The snippet sends up to 40 queued messages as one ``/v1/batch`` body and deletes them
once answered with anything below 500 (a 4xx would never succeed). The collector now
stores a batch's valid messages and answers 200 with the refused ones in ``rejected``
(and dead-letters them), so a message the page cannot fix (here an event name over 255
characters) is refused alone. The extension module (``static/sightline-ext.js``) has
the same rule (``delivered = response.status < 500``) and sends the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from sightline.settings import Settings
from sightline.store.queries import list_dead_letters
from tests.browser.live import LiveCollector
from tests.browser.support import PageFactory, Site, wait_until_delivered
from tests.servers import RedisServer

pytestmark = pytest.mark.browser


@pytest.fixture
def collector(settings: Settings, redis_server: RedisServer, site: Site) -> Iterator[LiveCollector]:
    with LiveCollector(settings, redis_server, (site.url,)) as live:
        yield live


def test_a_bad_message_in_the_snippets_batch_costs_only_itself(
    page: Page, make_page: PageFactory, collector: LiveCollector
) -> None:
    page.goto(make_page())
    # Queued together: the snippet sends 1 s after the first, all in one batch.
    page.evaluate(
        "sightline('track', 'Before'); sightline('track', 'x'.repeat(300));"
        "sightline('track', 'After', {kept: true})"
    )
    wait_until_delivered(page)  # answered (200): nothing left to resend
    stored = collector.wait_for(3, type="track") + collector.wait_for(type="page")
    names = sorted(m["event"] for m in stored)
    assert names == ["After", "Before", "page_view"]
    assert [m["properties"] for m in stored if m["event"] == "After"] == [{"kept": True}]
    with collector.engine.connect() as conn:
        [letter] = list_dead_letters(conn, include_replayed=True)
    assert "event" in letter.detail and "length" in letter.detail
