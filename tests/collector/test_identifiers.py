"""Other trackers' names for a product: registered with the CLI, resolved by the collector."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from collector.auth import authorize_site
from collector.directory import KeyKind, KeyTable, ProductDirectory
from sightline.errors import Forbidden, Unauthorized
from sightline.store.products import list_products
from tests.cli.test_cli import invoke, run
from tests.harness import System


def resolve(system: System, format: str, name: str, origin: str | None = None) -> str:
    """The product ``name`` names for ``format``, through a collector's key table."""

    def load() -> KeyTable:
        with system.engine.connect() as conn:
            return KeyTable.from_products(list_products(conn))

    async def run_it() -> str:
        directory = ProductDirectory(load, refresh_seconds=60)
        await directory.reload()
        grant = await authorize_site(directory, format, name, origin=origin)
        assert grant.kind is KeyKind.WRITE or name == system.server_key
        return grant.product.id

    return asyncio.run(run_it())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_registered_identifiers_and_the_write_key_name_the_product(system: System) -> None:
    pid, website = system.product.id, str(uuid.uuid4())
    run(system, "products", "ids", pid, "add", "plausible", "WWW.Shop.Example")
    run(system, "products", "ids", pid, "add", "umami", website.upper())
    run(system, "products", "ids", pid, "add", "matomo", "007")
    run(system, "products", "ids", pid, "add", "ga4", "g-abc123")
    assert run(system, "products", "ids", pid, "list").splitlines() == [
        "ga4  G-ABC123",
        "matomo  7",
        "plausible  shop.example",
        f"umami  {website}",
    ]
    for format, name in [
        ("plausible", "shop.example"),
        ("plausible", "www.SHOP.example"),
        ("umami", website),
        ("matomo", "7"),
        ("ga4", "G-ABC123"),
        ("posthog", system.write_key),  # the write key works everywhere, unregistered
        ("snowplow", system.write_key),
    ]:
        assert resolve(system, format, name) == pid, (format, name)
    with pytest.raises(Unauthorized):
        resolve(system, "plausible", "other.example")
    with pytest.raises(Unauthorized):
        resolve(system, "matomo", "8")
    run(system, "products", "ids", pid, "remove", "matomo", "7")
    with pytest.raises(Unauthorized):
        resolve(system, "matomo", "7")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_identifier_names_one_product_and_keeps_its_origins(system: System) -> None:
    shop = system.create_product("Shop", origins=("https://shop.example",))
    run(system, "products", "ids", shop.id, "add", "plausible", "shop.example")
    taken = invoke(system, "products", "ids", system.product.id, "add", "plausible", "shop.example")
    assert taken.exit_code == 1 and "already names product" in taken.output
    assert resolve(system, "plausible", "shop.example", "https://shop.example") == shop.id
    with pytest.raises(Forbidden):
        resolve(system, "plausible", "shop.example", "https://evil.example")


@pytest.mark.parametrize(
    ("format", "value", "reason"),
    [
        ("nosuch", "x", "one of posthog, snowplow"),
        ("umami", "not-a-uuid", "a Umami website id is a UUID"),
        ("matomo", "site-3", "a Matomo site id is a number"),
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_identifiers_are_refused(system: System, format: str, value: str, reason: str) -> None:
    result = invoke(system, "products", "ids", system.product.id, "add", format, value)
    assert result.exit_code == 2, result.output
    assert reason in result.output
