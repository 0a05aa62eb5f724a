"""``sightline events list`` prints what clients sent without letting it drive the terminal
(issue 14, finding 12: one event's name forged a whole line)."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import run
from tests.harness import System

FORGED = "Signup\n2026-01-01T00:00:00+00:00  track      Admin Login\r\x1b[2K\x1b[31mred"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_control_characters_are_shown_escaped(system: System) -> None:
    system.send("/v1/track", {"userId": "u\x1b]0;title\x07", "event": FORGED})
    system.work()
    out = run(system, "events", "list")
    assert out.count("\n") == 1  # one event, one line
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "Signup\\x0a2026-01-01" in out and "\\x1b[31mred" in out
