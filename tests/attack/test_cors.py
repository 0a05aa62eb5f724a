"""CORS for the opaque origin ``null`` (issue 14, finding 11).

A product open to any origin used to answer a preflight from ``Origin: null`` (every
sandboxed iframe, ``data:`` and ``file:`` page) with ``Access-Control-Allow-Origin:
null`` and ``Allow-Credentials: true``.
"""

from __future__ import annotations

import pytest

from tests.harness import System, basic


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_origin_null_gets_no_grant(system: System) -> None:
    assert system.product.allowed_origins == ()  # open to any origin
    preflight = system.client.options(
        "/v1/track",
        headers={
            "Origin": "null",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-evil",
        },
    )
    assert preflight.status_code == 403
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    simple = system.client.post(
        "/v1/track",
        content=b'{"userId":"u","event":"E"}',
        headers=basic(system.write_key) | {"Origin": "null", "Content-Type": "text/plain"},
    )
    assert not any(name.startswith("access-control-") for name in simple.headers)
    real = system.client.options(
        "/v1/track",
        headers={"Origin": "https://site.example", "Access-Control-Request-Method": "POST"},
    )
    assert real.headers["access-control-allow-origin"] == "https://site.example"
