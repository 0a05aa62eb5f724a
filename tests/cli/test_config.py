"""Bad configuration and unreachable servers, as a user meets them: the ``sightline``
executable ends with one line naming the variable and the reason, exit status 2, no
traceback, and never prints a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sightline.settings import VARIABLES
from tests.servers import free_port
from tests.test_settings import BAD, SECRET

SIGHTLINE = str(Path(sys.executable).with_name("sightline"))
COMMANDS = [
    ["up"],
    ["collector"],
    ["worker", "--burst"],
    ["migrate"],
    ["products", "list"],
    ["products", "create", "Shop"],
    ["products", "origins", "prd_x", "--any"],
    ["events", "list"],
    ["deadletters", "list"],
    ["deadletters", "replay"],
]


def sightline(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed ``sightline`` in ``cwd``, with only these Sightline variables set."""
    names = {variable.name for variable in VARIABLES}
    clean = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run(
        [SIGHTLINE, *args],
        cwd=cwd,
        env={**clean, "SIGHTLINE_DATA_DIR": str(cwd / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str], variable: str) -> str:
    """The one line a refused command printed (and the checks every refusal passes)."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert SECRET not in output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: {variable}: "), line
    return line


@pytest.mark.parametrize(("variable", "value", "reason"), BAD)
def test_a_bad_value_ends_the_command_in_one_line(
    tmp_path: Path, variable: str, value: str, reason: str
) -> None:
    line = refused(sightline(tmp_path, "migrate", **{variable: value}), variable)
    assert reason in line
    assert not (tmp_path / "data").exists(), "nothing was started or created"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_refuses_a_bad_value(tmp_path: Path, command: list[str]) -> None:
    url = f"mysql://user:{SECRET}@db.example/sightline"
    line = refused(sightline(tmp_path, *command, DATABASE_URL=url), "DATABASE_URL")
    assert "unknown database driver 'mysql'" in line


@pytest.mark.parametrize("command", [["up"], ["collector"], ["worker"], ["migrate"]], ids=" ".join)
def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, redis_url: str, command: list[str]
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://sightline:{SECRET}@127.0.0.1:{port}/sightline"
    line = refused(
        sightline(tmp_path, *command, DATABASE_URL=url, REDIS_URL=redis_url), "DATABASE_URL"
    )
    assert line.startswith(
        f"Error: DATABASE_URL: cannot connect to "
        f"postgresql+psycopg://sightline:***@127.0.0.1:{port}/sightline: "
    )
    assert "Connection refused" in line


def test_a_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/sightline.db"
    line = refused(sightline(tmp_path, "migrate", DATABASE_URL=url), "DATABASE_URL")
    assert line == f"Error: DATABASE_URL: cannot connect to {url}: unable to open database file"


@pytest.mark.parametrize("command", [["up"], ["collector"], ["worker"], ["migrate"]], ids=" ".join)
def test_an_unreachable_redis_is_one_line_without_the_password(
    tmp_path: Path, command: list[str]
) -> None:
    port = free_port()
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    line = refused(sightline(tmp_path, *command, REDIS_URL=url), "REDIS_URL")
    assert line.startswith(f"Error: REDIS_URL: cannot connect to redis://:***@127.0.0.1:{port}/0: ")
    assert "refused" in line.lower()


def test_options_are_checked_like_their_variables(tmp_path: Path) -> None:
    for args, message in [
        (["up", "--port", "0"], "Invalid value for '--port'"),
        (["collector", "--port", "70000"], "Invalid value for '--port'"),
        (["up", "--fsync", "never"], "Invalid value for '--fsync'"),
    ]:
        result = sightline(tmp_path, *args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
