"""The ``sightline`` command line. Every option can also come from the environment."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec
import sqlalchemy as sa
import uvicorn

from sightline.settings import Settings, SettingsError
from sightline.signals import stop_on_sigterm
from sightline.store.db import make_engine
from sightline.store.migrate import upgrade

_json = msgspec.json.Encoder()


@dataclass
class Context:
    settings: Settings

    def engine(self, migrate: bool = True) -> sa.Engine:
        engine = make_engine(self.settings.sqlalchemy_url)
        if migrate:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            upgrade(engine)
        return engine


pass_context = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--data-dir",
    envvar="SIGHTLINE_DATA_DIR",
    default="sightline-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the SQLite file and the embedded Redis live (unless DATABASE_URL / REDIS_URL).",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path) -> None:
    """Sightline: a self-hosted event collector for product analytics."""
    try:
        settings = Settings.from_env().with_changes(data_dir=data_dir)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = Context(settings)


@main.command()
@click.option("--host", envvar="SIGHTLINE_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="PORT", default=8000, show_default=True, type=int)
@click.option(
    "--fsync",
    envvar="SIGHTLINE_FSYNC",
    default="everysec",
    show_default=True,
    type=click.Choice(["always", "everysec"]),
    help="Embedded Redis append-only fsync policy (the loss window on an OS crash).",
)
@pass_context
def up(obj: Context, host: str, port: int, fsync: str) -> None:
    """Run everything: Redis (embedded unless REDIS_URL), store, worker and collector."""
    from sightline.up import run_up

    run_up(obj.settings, host=host, port=port, fsync=fsync)


@main.command()
@click.option("--host", envvar="SIGHTLINE_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="PORT", default=8000, show_default=True, type=int)
@click.option(
    "--forwarded-allow-ips",
    envvar="TRUSTED_PROXIES",
    default="127.0.0.1",
    show_default=True,
    help="Proxies whose X-Forwarded-For is believed (uvicorn's setting).",
)
@pass_context
def collector(obj: Context, host: str, port: int, forwarded_allow_ips: str) -> None:
    """Run the HTTP collector alone."""
    from collector.app import create_app
    from sightline.up import prepare_redis

    with stop_on_sigterm(), ExitStack() as stack:
        settings = prepare_redis(obj.settings, stack)
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            access_log=False,
        )


@main.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@pass_context
def worker(obj: Context, burst: bool) -> None:
    """Run one RQ worker process on Sightline's queue."""
    from sightline.up import prepare_redis
    from worker.main import run_worker

    obj.engine()  # migrate before the first job
    with ExitStack() as stack:
        settings = prepare_redis(obj.settings, stack)
        run_worker(settings, burst=burst)


@main.command()
@pass_context
def migrate(obj: Context) -> None:
    """Bring the database schema up to date (Alembic)."""
    obj.engine()
    click.echo(f"database at the newest revision: {obj.settings.sqlalchemy_url}")


def _origins_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    from sightline.origins import parse_origin

    try:
        return tuple(parse_origin(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.group()
def products() -> None:
    """Products (apps or sites) and their keys."""


@products.command("create")
@click.argument("name")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    callback=_origins_option,
    help="An origin browsers may send from, e.g. https://site.example (repeat).",
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def products_create(obj: Context, name: str, origins: tuple[str, ...], as_json: bool) -> None:
    """Create a product; prints its write key and server key."""
    from sightline.store.products import create_product

    engine = obj.engine()
    with engine.begin() as conn:
        product = create_product(conn, name, allowed_origins=origins)
    if as_json:
        click.echo(_json.encode(product))
        return
    click.echo(f"created {product.name!r} ({product.id})")
    click.echo(f"  write key:  {product.write_keys[0]}")
    click.echo(f"  server key: {product.server_keys[0]}")


@products.command("origins")
@click.argument("product_id")
@click.argument("origins", nargs=-1, callback=_origins_option)
@click.option("--any", "any_origin", is_flag=True, help="Clear the list: any origin may send.")
@pass_context
def products_origins(
    obj: Context, product_id: str, origins: tuple[str, ...], any_origin: bool
) -> None:
    """Replace the origins browsers may send PRODUCT_ID's events from.

    Collectors pick the change up within SIGHTLINE_KEY_REFRESH_SECONDS.
    """
    from sightline.store.products import ProductSettings, update_product

    if bool(origins) == any_origin:
        raise click.UsageError("give the origins, or --any to allow every origin")
    engine = obj.engine()
    with engine.begin() as conn:
        product = update_product(conn, product_id, ProductSettings(allowed_origins=origins))
    if product is None:
        raise click.ClickException(f"no product {product_id!r}")
    click.echo(f"{product.id} origins: {', '.join(product.allowed_origins) or 'any origin'}")


@products.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
def products_list(obj: Context, as_json: bool) -> None:
    """List products with their keys and settings."""
    from sightline.store.products import list_products

    engine = obj.engine()
    with engine.connect() as conn:
        found = list_products(conn)
    for product in found:
        if as_json:
            click.echo(_json.encode(product))
        else:
            origins = ", ".join(product.allowed_origins) or "any origin"
            click.echo(
                f"{product.id}  {product.name}  write={','.join(product.write_keys)}  "
                f"server={','.join(product.server_keys)}  origins: {origins}"
            )


@main.group()
def events() -> None:
    """Stored events."""


@events.command("list")
@click.option("--product", "product_id", help="Only this product's events.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="NDJSON of the canonical records.")
@pass_context
def events_list(obj: Context, product_id: str | None, limit: int, as_json: bool) -> None:
    """The newest events first."""
    from sightline.store.queries import recent_events

    engine = obj.engine()
    with engine.connect() as conn:
        found = recent_events(conn, product_id=product_id, limit=limit)
    for event in found:
        if as_json:
            click.echo(_json.encode(event))
        else:
            who = event.user_id or event.anonymous_id or "-"
            click.echo(
                f"{event.timestamp.isoformat()}  {event.type.value:<10} {event.name:<30} "
                f"{who}  [{event.dialect}] {event.product_id}"
            )


@main.group()
def deadletters() -> None:
    """Envelopes the worker could not store, with the reason."""


@deadletters.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed ones.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def deadletters_list(obj: Context, include_replayed: bool, as_json: bool) -> None:
    """Dead letters not yet replayed."""
    from sightline.store.queries import list_dead_letters

    engine = obj.engine()
    with engine.connect() as conn:
        found = list_dead_letters(conn, include_replayed=include_replayed)
    for letter in found:
        if as_json:
            click.echo(_json.encode(letter))
        else:
            click.echo(
                f"#{letter.id}  {letter.created_at.isoformat()}  {letter.reason}: {letter.detail}"
            )


@deadletters.command("replay")
@pass_context
def deadletters_replay(obj: Context) -> None:
    """Run dead letters through this version's worker again (idempotent)."""
    from sightline.store.queries import list_dead_letters, mark_replayed
    from worker.batch import BatchProcessor
    from worker.enricher import Enricher

    engine = obj.engine()
    with engine.connect() as conn:
        letters = list_dead_letters(conn)
    if not letters:
        click.echo("no dead letters to replay")
        return
    processor = BatchProcessor(engine, Enricher())
    result = processor.process([letter.envelope for letter in letters])
    with engine.begin() as conn:
        mark_replayed(conn, [letter.id for letter in letters], datetime.now(UTC))
    click.echo(
        f"replayed {len(letters)}: {result.stored} stored, {result.duplicates} already stored, "
        f"{result.dead_letters} dead again"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
