"""Rotating and revoking keys (issue 14, finding 13: no command rotated or revoked one)."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import invoke, run
from tests.harness import System, basic


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_key_is_rotated_then_the_old_one_refused(system: System) -> None:
    pid, old = system.product.id, system.write_key
    last = invoke(system, "products", "keys", pid, "revoke", old)
    assert last.exit_code == 1 and "last write key" in last.output
    new = run(system, "products", "keys", pid, "add", "write").strip()
    assert new.startswith("wk_") and new != old
    body = {"userId": "u", "event": "E"}
    assert system.send("/v1/track", body, key=new).status_code == 200  # a new key works at once
    assert "revoked" in run(system, "products", "keys", pid, "revoke", old)
    again = invoke(system, "products", "keys", pid, "revoke", old)
    assert again.exit_code == 1 and "no such live key" in again.output
    # The collector reloads its key table every SIGHTLINE_KEY_REFRESH_SECONDS: do it now.
    assert system.client.portal is not None
    system.client.portal.call(system.client.app_state["directory"].reload)
    refused = system.client.post("/v1/track", json=body, headers=basic(old))
    assert refused.status_code == 401
    assert system.send("/v1/track", body, key=new).status_code == 200
