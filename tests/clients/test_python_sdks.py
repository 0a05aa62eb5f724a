"""segment-analytics-python and rudder-sdk-python, unmodified, against a real collector.

What a user changes (docs/dialects.md, "Segment and RudderStack SDKs"): ``host`` (the
collector's base URL) and the write key. segment-analytics-python sends gzip only with
``gzip=True``; rudder-sdk-python gzips by default and puts identify traits in
``context.traits`` only.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pytest
import rudderstack.analytics as rudder_analytics
import segment.analytics as segment_analytics

from tests.browser.live import LiveCollector
from tests.clients.scenario import (
    GROUP_TRAITS,
    PAGE_PROPERTIES,
    PROPERTIES,
    TIMESTAMP,
    TRAITS,
    Script,
    check_stored,
)


def run_script(client: Any, script: Script, errors: list[Any]) -> None:
    """The scenario's calls through a Segment-style Python client, then one flush."""
    user = script.user_id
    client.identify(user, dict(TRAITS), anonymous_id=f"anon-{script.sdk}")
    for _ in range(2):  # the same message twice: stored once
        client.track(
            user,
            "Order Completed",
            dict(PROPERTIES),
            timestamp=TIMESTAMP,
            message_id=script.message_id,
        )
    client.page(user, name="Pricing", properties=dict(PAGE_PROPERTIES))
    client.screen(user, name="Home")
    client.group(user, script.group_id, dict(GROUP_TRAITS))
    client.alias(script.previous_id, user)
    client.flush()
    client.shutdown()
    assert errors == []


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_analytics_python(live: LiveCollector, gzip: bool) -> None:
    assert version("segment-analytics-python") == "2.4.0"
    errors: list[Any] = []
    client = segment_analytics.Client(
        live.server_key,  # a server SDK: the server key (README, "What a write key can change")
        host=live.url,
        gzip=gzip,
        on_error=lambda exc, batch: errors.append(exc),
        max_retries=1,
    )
    script = Script(f"segment-py-{'gz' if gzip else 'plain'}")
    run_script(client, script, errors)
    stored = check_stored(live, script, anonymous_id=f"anon-{script.sdk}", server_key=True)
    assert stored["track"].context["library"]["name"] == "analytics-python"


def test_rudder_sdk_python_with_its_defaults(live: LiveCollector) -> None:
    assert version("rudder-sdk-python") == "2.1.9"
    errors: list[Any] = []
    client = rudder_analytics.Client(
        live.server_key,
        host=live.url,  # its dataPlaneUrl; gzip stays on, as by default
        on_error=lambda exc, batch: errors.append(exc),
        max_retries=1,
    )
    script = Script("rudder-py")
    run_script(client, script, errors)
    stored = check_stored(live, script, anonymous_id=f"anon-{script.sdk}", server_key=True)
    assert stored["track"].context["library"]["name"] == "analytics-python"
    assert stored["identify"].context["traits"]["email"] == TRAITS["email"]
