"""``/metrics`` was open to whoever reached the port (issue 14, finding 13).

The collector's port is public (pages send to it), so ``GET /metrics`` answers a bearer
token (``SIGHTLINE_METRICS_TOKEN``, what a Prometheus scrape config's ``authorization``
sends) and, unless ``SIGHTLINE_METRICS_LOOPBACK=token``, a scrape straight from a
loopback address, never one a proxy relayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.testclient import TestClient

from collector.app import create_app
from sightline.settings import Settings, SettingsError
from tests.browser.support import ServerThread
from tests.harness import METRICS_TOKEN, System

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def collector_on_loopback(settings: Settings) -> Iterator[str]:
    """The real collector under uvicorn on 127.0.0.1 (``X-Forwarded-For`` believed from
    127.0.0.1, as ``sightline up`` runs it); its URL."""
    with ServerThread(create_app(settings)) as server:
        yield server.url


@SQLITE
def test_a_remote_scrape_needs_the_token(system: System) -> None:
    # The test client's peer is no loopback address: a remote scrape.
    bare = system.client.get("/metrics")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert bare.json()["code"] == "unauthorized" and "SIGHTLINE_METRICS_TOKEN" in bare.text
    assert "sightline_requests" not in bare.text
    for wrong in ("nope", METRICS_TOKEN + "x"):
        assert system.client.get("/metrics", headers=bearer(wrong)).status_code == 401
    # Bytes beyond ASCII in the header: a 401 too (never a 500 from the comparison).
    raw = {"Authorization": "Bearer tökén-with-ümlauts-0123456789".encode()}
    assert system.client.get("/metrics", headers=raw).status_code == 401
    basic = {"Authorization": "Basic " + METRICS_TOKEN}
    assert system.client.get("/metrics", headers=basic).status_code == 401
    good = system.client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert good.status_code == 200 and "sightline_requests_total" in good.text
    assert good.headers["content-type"].startswith("text/plain")


@SQLITE
def test_without_a_token_only_loopback_scrapes_are_answered(system: System) -> None:
    settings = system.settings.with_changes(metrics_token=None)
    with collector_on_loopback(settings) as url:
        local = httpx.get(url + "/metrics")
        assert local.status_code == 200 and "sightline_requests_total" in local.text
        # Relayed by a proxy on this host (uvicorn believes 127.0.0.1's X-Forwarded-For):
        # the client is whoever the proxy says, never this host.
        for relayed in (
            {"X-Forwarded-For": "203.0.113.9"},
            {"X-Forwarded-For": "127.0.0.1"},
            {"Forwarded": "for=127.0.0.1"},
            {"X-Real-IP": "127.0.0.1"},
        ):
            refused = httpx.get(url + "/metrics", headers=relayed)
            assert refused.status_code == 403, relayed
            assert "loopback scrapes only" in refused.json()["message"]
    with TestClient(create_app(settings)) as client:  # a peer that is not this host
        assert client.get("/metrics").status_code == 403


@SQLITE
def test_loopback_can_be_made_to_need_the_token_too(system: System) -> None:
    settings = system.settings.with_changes(metrics_loopback="token")
    with collector_on_loopback(settings) as url:
        assert httpx.get(url + "/metrics").status_code == 401
        answered = httpx.get(url + "/metrics", headers=bearer(METRICS_TOKEN))
        assert answered.status_code == 200 and "sightline_requests_total" in answered.text
    # The default (open) lets a loopback scrape in without the token while one is set.
    with collector_on_loopback(system.settings) as url:
        assert httpx.get(url + "/metrics").status_code == 200


def test_the_settings_refuse_a_weak_token_or_an_unknown_mode() -> None:
    with pytest.raises(SettingsError, match="SIGHTLINE_METRICS_TOKEN: must be at least 16"):
        Settings.from_env({"SIGHTLINE_METRICS_TOKEN": "short"})
    with pytest.raises(SettingsError, match="SIGHTLINE_METRICS_TOKEN"):
        Settings.from_env({"SIGHTLINE_METRICS_TOKEN": "has spaces in it, sixteen+"})
    with pytest.raises(SettingsError, match="SIGHTLINE_METRICS_LOOPBACK: must be one of open"):
        Settings.from_env({"SIGHTLINE_METRICS_LOOPBACK": "closed"})
    parsed = Settings.from_env({"SIGHTLINE_METRICS_TOKEN": METRICS_TOKEN})
    assert (parsed.metrics_token, parsed.metrics_loopback) == (METRICS_TOKEN, "open")
