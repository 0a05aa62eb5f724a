"""The ``sightline`` CLI against the same store the collector and worker use."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from sightline.cli import main
from tests.harness import System


def invoke(system: System, *args: str, catch_exceptions: bool = True) -> Result:
    """The CLI on this system's store and Redis; the caller checks the exit code."""
    env = {
        "DATABASE_URL": system.settings.sqlalchemy_url,
        "REDIS_URL": system.settings.redis_url or "",
        "SIGHTLINE_DATA_DIR": str(system.settings.data_dir),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=catch_exceptions)


def run(system: System, *args: str) -> str:
    """A CLI call that must succeed; its output."""
    result = invoke(system, *args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_products_create_and_list(system: System) -> None:
    created = json.loads(
        run(system, "products", "create", "Shop", "--origin", "https://shop.example", "--json")
    )
    assert created["name"] == "Shop"
    assert created["write_keys"][0].startswith("wk_")
    assert created["server_keys"][0].startswith("sk_")
    listed = [json.loads(line) for line in run(system, "products", "list", "--json").splitlines()]
    assert [p["name"] for p in listed] == ["Default product", "Shop"]
    assert listed[1]["allowed_origins"] == ["https://shop.example"]
    assert "https://shop.example" in run(system, "products", "list")


def test_products_create_keeps_origins_as_browsers_send_them(system: System) -> None:
    typed = ["https://Shop.example:443/", "https://shop.example", "http://127.0.0.1:8000"]
    args = [a for origin in typed for a in ("--origin", origin)]
    created = json.loads(run(system, "products", "create", "Shop", *args, "--json"))
    assert created["allowed_origins"] == ["https://shop.example", "http://127.0.0.1:8000"]


def test_products_create_refuses_what_is_not_an_origin(system: System) -> None:
    result = invoke(
        system, "products", "create", "Shop", "--origin", "https://shop.example/pricing"
    )
    assert result.exit_code == 2
    assert "Invalid value for '--origin'" in result.output
    assert "no path, query or fragment (https://shop.example)" in result.output
    assert [
        p["name"] for p in map(json.loads, run(system, "products", "list", "--json").splitlines())
    ] == ["Default product"]


def test_products_origins_replaces_the_list(system: System) -> None:
    shop = json.loads(run(system, "products", "create", "Shop", "--json"))
    out = run(
        system, "products", "origins", shop["id"], "https://Shop.example/", "http://a.test:81"
    )
    assert out.strip() == f"{shop['id']} origins: https://shop.example, http://a.test:81"
    assert run(system, "products", "origins", shop["id"], "--any").strip().endswith("any origin")
    for args, message in [
        ([shop["id"]], "give the origins, or --any"),
        (["prd_nope", "https://a.test"], "no product 'prd_nope'"),
        ([shop["id"], "a.test"], "is not an origin"),
    ]:
        result = invoke(system, "products", "origins", *args)
        assert result.exit_code != 0 and message in result.output, result.output


def test_events_list_newest_first_as_ndjson(system: System) -> None:
    for i, ts in enumerate(
        ["2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z"]
    ):
        system.send("/v1/track", {"userId": "u", "event": f"E{i}", "timestamp": ts})
    system.work()
    lines = run(system, "events", "list", "--json", "--limit", "2").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["name"] for r in records] == ["E1", "E2"]
    assert records[0]["product_id"] == system.product.id
    assert records[0]["type"] == "track"
    other = run(system, "events", "list", "--product", "prd_none", "--json")
    assert other == ""
    assert "E1" in run(system, "events", "list")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_deadletters_list_and_replay(system: System) -> None:
    from tests.worker.test_batch import forged, requeue

    requeue(
        system, [forged(system, body={"userId": "u", "event": "Fixed later", "timestamp": "soon"})]
    )
    system.work()
    listed = [
        json.loads(line) for line in run(system, "deadletters", "list", "--json").splitlines()
    ]
    assert [d["reason"] for d in listed] == ["schema"]
    assert "timestamp" in listed[0]["detail"]
    out = run(system, "deadletters", "replay")
    assert "replayed 1: 0 stored, 0 already stored, 1 dead again" in out
    assert run(system, "deadletters", "list", "--json") != ""  # the new dead letter
    assert (
        len(
            json.loads(
                "["
                + ",".join(run(system, "deadletters", "list", "--all", "--json").splitlines())
                + "]"
            )
        )
        == 2
    )


def test_migrate(system: System) -> None:
    assert "newest revision" in run(system, "migrate")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_replay_stores_once_its_cause_is_fixed_and_is_idempotent(system: System) -> None:
    from sightline.store.products import create_product
    from tests.worker.test_batch import forged, requeue

    requeue(system, [forged(system, product_id="prd_late")])
    system.work()
    assert [d.reason for d in system.dead_letters()] == ["unknown_product"]
    with system.engine.begin() as conn:
        create_product(conn, "Late", product_id="prd_late")
    assert "replayed 1: 1 stored" in run(system, "deadletters", "replay")
    assert "no dead letters to replay" in run(system, "deadletters", "replay")
    assert [e.product_id for e in system.events()] == ["prd_late"]
