"""``sightline/settings.py``: every variable declared once, parsed and checked, documented."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click
import pytest

from sightline.cli import main
from sightline.settings import VARIABLES, Settings, SettingsError, hide_password

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-Pa55"


def readme_configuration_table() -> dict[str, tuple[list[str], str, str]]:
    """The README's configuration table: variable -> (its options, default, meaning)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table: dict[str, tuple[list[str], str, str]] = {}
    for row in rows:
        first, default, meaning = (cell.strip() for cell in row.strip("|").split(" | ", 2))
        names = re.findall(r"`([^`]+)`", first)
        variable, options = names[0], names[1:]
        assert variable not in table, f"{variable} is in the table twice"
        table[variable] = (options, default, meaning)
    return table


def test_the_readme_lists_every_variable_settings_reads_and_no_other() -> None:
    documented = readme_configuration_table()
    declared = [variable.name for variable in VARIABLES]
    assert len(declared) == len(set(declared))
    assert sorted(documented) == sorted(declared)


def test_the_readme_names_real_options_and_the_real_defaults() -> None:
    options = {
        option
        for command in [main, *main.commands.values()]
        for param in command.params
        if isinstance(param, click.Option)
        for option in param.opts
    }
    defaults = Settings()
    for variable in VARIABLES:
        names, default, _ = readme_configuration_table()[variable.name]
        assert set(names) <= options, f"{variable.name}: no such option {names}"
        value = getattr(defaults, variable.field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert float(default.strip("`")) == value, variable.name
        elif isinstance(value, str):
            assert default == f"`{value}`", variable.name


def test_every_variable_sets_a_field() -> None:
    names = {f.name for f in fields(Settings)}
    assert {variable.field for variable in VARIABLES} <= names
    assert "test_write_delay" not in names  # test hooks live in tests/, not in production


def test_values_are_parsed_into_the_fields(tmp_path: Path) -> None:
    asn = tmp_path / "asn.mmdb"
    asn.write_bytes(b"")
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(tmp_path),
            "REDIS_URL": "rediss://:pw@cache.example:6380/2",
            "DATABASE_URL": "postgresql+psycopg://u:pw@db.example/sightline",
            "GEOIP_DB": "off",
            "GEOIP_ASN_DB": str(asn),
            "SIGHTLINE_QUEUE": "q",
            "SIGHTLINE_REDIS_TIMEOUT": "2.5",
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_FLUSH_MAX_EVENTS": "10",
            "SIGHTLINE_KEY_REFRESH_SECONDS": "3",
            "SIGHTLINE_JOB_TIMEOUT": "60",
            "SIGHTLINE_MAX_RETRIES": "0",
            "SIGHTLINE_OUTAGE_RETRY_HOURS": "0",
            "SIGHTLINE_WORKER_LIVENESS_TTL": "1.5",
            "SIGHTLINE_HOST": "0.0.0.0",
            "PORT": "9000",
            "SIGHTLINE_FSYNC": "always",
            "TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1",
            "SIGHTLINE_SHARED_RATE_LIMITS": "On",
        }
    )
    assert settings == Settings(
        data_dir=tmp_path,
        redis_url="rediss://:pw@cache.example:6380/2",
        database_url="postgresql+psycopg://u:pw@db.example/sightline",
        geoip_db="off",
        geoip_asn_db=str(asn),
        queue_name="q",
        redis_timeout=2.5,
        flush_linger_ms=0.0,
        flush_max_events=10,
        key_refresh_seconds=3.0,
        job_timeout=60,
        max_retries=0,
        outage_retry_hours=0.0,
        worker_liveness_ttl=1.5,
        host="0.0.0.0",
        port=9000,
        fsync="always",
        trusted_proxies="10.0.0.0/8,127.0.0.1",
        shared_rate_limits=True,
    )
    assert Settings.from_env({name.name: "" for name in VARIABLES}) == Settings()
    assert Settings.from_env({}).overridden(port=1234, host=None).port == 1234


BAD = [
    ("REDIS_URL", "http://cache:6379", "must be a redis://, rediss:// or unix:// URL"),
    ("REDIS_URL", f"ftp://user:{SECRET}@cache/0", "must be a redis://"),
    ("REDIS_URL", "redis://cache:port/0", "not a valid URL"),
    ("REDIS_URL", "unix://", "needs the socket's path"),
    ("DATABASE_URL", f"user:{SECRET}@db", "not a database URL"),
    (
        "DATABASE_URL",
        f"mysql+pymysql://user:{SECRET}@db/x",
        "unknown database driver 'mysql+pymysql'",
    ),
    ("DATABASE_URL", f"postgres://user:{SECRET}@db/x", "unknown database driver 'postgres'"),
    (
        "DATABASE_URL",
        f"postgresql+nosuch://u:{SECRET}@db/x",
        "unknown database driver 'postgresql+nosuch'",
    ),
    ("DATABASE_URL", f"postgresql+asyncpg://u:{SECRET}@db/x", "asyncio driver"),
    ("GEOIP_DB", "/no/such/City.mmdb", "no such file: /no/such/City.mmdb"),
    ("GEOIP_ASN_DB", "/no/such/ASN.mmdb", "no such file: /no/such/ASN.mmdb"),
    ("SIGHTLINE_REDIS_TIMEOUT", "0", "must be greater than 0"),
    ("SIGHTLINE_REDIS_TIMEOUT", "-1", "must be greater than 0"),
    ("SIGHTLINE_REDIS_TIMEOUT", "soon", "must be a number"),
    ("SIGHTLINE_REDIS_TIMEOUT", "nan", "must be a finite number"),
    ("SIGHTLINE_FLUSH_LINGER_MS", "-5", "must not be negative"),
    ("SIGHTLINE_SHARED_RATE_LIMITS", "maybe", "must be on or off"),
    ("SIGHTLINE_FLUSH_MAX_EVENTS", "0", "must be greater than 0"),
    ("SIGHTLINE_KEY_REFRESH_SECONDS", "0", "must be greater than 0"),
    ("SIGHTLINE_JOB_TIMEOUT", "0", "must be greater than 0"),
    ("SIGHTLINE_JOB_TIMEOUT", "1.5", "must be an integer"),
    ("SIGHTLINE_MAX_RETRIES", "-1", "must not be negative"),
    ("SIGHTLINE_OUTAGE_RETRY_HOURS", "-1", "must not be negative"),
    ("SIGHTLINE_WORKER_LIVENESS_TTL", "0", "must be greater than 0"),
    ("PORT", "0", "must be a port number from 1 to 65535"),
    ("PORT", "http", "must be an integer"),
    ("SIGHTLINE_FSYNC", "never", "must be one of always, everysec"),
]
"""(variable, value, what the one line says): every kind of value Settings refuses."""


@pytest.mark.parametrize(("variable", "value", "reason"), BAD)
def test_a_bad_value_is_one_line_naming_the_variable(
    variable: str, value: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert reason in message
    assert "\n" not in message
    assert SECRET not in message
    assert caught.value.variable == variable


def test_passwords_are_hidden() -> None:
    assert hide_password(f"redis://:{SECRET}@cache:6379/0") == "redis://:***@cache:6379/0"
    assert hide_password(f"rediss://me:{SECRET}@cache/0") == "rediss://me:***@cache/0"
    assert hide_password("redis://cache:6379/0") == "redis://cache:6379/0"
    assert hide_password("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


def test_the_procfile_runs_sightline_commands_and_migrates_on_release() -> None:
    processes = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert processes["release"] == "sightline migrate"
    for command in processes.values():
        program, name, *_ = command.split()
        assert (program, name in main.commands) == ("sightline", True), command
    # The collector reads PORT and TRUSTED_PROXIES from Settings, like every other way.
    assert processes["web"] == "sightline collector --host 0.0.0.0"
