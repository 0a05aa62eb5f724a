"""The ``sightline`` command line.

Every setting comes from :class:`~sightline.settings.Settings`: the command builds
``Settings.from_env()`` and the options given override its fields (an option left out
keeps the environment's value, else the default). A bad setting, a server that does not
answer or a schema that is not current ends any command with one line naming the
variable and the reason, and exit status 2; no output ever shows a password.

Only ``migrate`` and ``up`` change the schema. Every other command (the collector, the
worker, and the ``products``, ``events`` and ``deadletters`` commands, which read or write
rows) refuses a database whose schema is not current: run ``sightline migrate`` first.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import sqlalchemy as sa

from sightline.embedded import EmbeddedRedisError
from sightline.model import ClientIdentity
from sightline.preflight import check_redis, check_spool, open_store
from sightline.settings import (
    FSYNC_CHOICES,
    Settings,
    SettingsError,
    default_of,
    hide_database_password,
)
from sightline.signals import stop_on_sigterm
from sightline.store.db import read_connection
from sightline.store.migrate import SchemaNotCurrent

_json = msgspec.json.Encoder()


class ConfigError(click.ClickException):
    """A setting we cannot use or a server we cannot reach: one line, exit status 2."""

    exit_code = 2


class SightlineGroup(click.Group):
    """Turns configuration and start-up errors of every command into a :class:`ConfigError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SettingsError, SchemaNotCurrent) as exc:
            raise ConfigError(str(exc)) from None
        except EmbeddedRedisError as exc:
            raise ConfigError(f"REDIS_URL: unset, and the embedded server: {exc}") from None


@dataclass
class Context:
    settings: Settings

    def store(self) -> sa.Engine:
        """The database, refused (:class:`SchemaNotCurrent`) unless its schema is current."""
        return open_store(self.settings)


pass_context = click.make_pass_decorator(Context)

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """``text`` with control characters (newline, CR, ESC ...) shown escaped: a value a
    client sent can never forge a line, move the cursor or recolour a terminal."""
    return text.translate(_CONTROL)


def _from_settings(variable: str, field: str, help: str) -> str:
    return f"{help} [env {variable}; default: {default_of(field)}]"


host_option = click.option(
    "--host", help=_from_settings("SIGHTLINE_HOST", "host", "Address the collector listens on.")
)
port_option = click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help=_from_settings("PORT", "port", "The collector's port."),
)
proxies_option = click.option(
    "--forwarded-allow-ips",
    "trusted_proxies",
    help=_from_settings(
        "TRUSTED_PROXIES",
        "trusted_proxies",
        "Proxies whose X-Forwarded-For is believed (comma-separated; * for any).",
    ),
)
fsync_option = click.option(
    "--fsync",
    type=click.Choice(FSYNC_CHOICES),
    help=_from_settings(
        "SIGHTLINE_FSYNC",
        "fsync",
        "Embedded Redis append-only fsync policy (the loss window on an OS crash).",
    ),
)


@click.group(cls=SightlineGroup)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=_from_settings(
        "SIGHTLINE_DATA_DIR",
        "data_dir",
        "Where the SQLite file and the embedded Redis live (unless DATABASE_URL / REDIS_URL).",
    ),
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """Sightline: a self-hosted event collector for product analytics."""
    ctx.obj = Context(Settings.from_env().overridden(data_dir=data_dir))


@main.command()
@host_option
@port_option
@fsync_option
@proxies_option
@click.option(
    "--workers",
    type=click.IntRange(0),
    help=_from_settings(
        "SIGHTLINE_WORKERS", "workers", "Worker processes to run and restart (0: one per core)."
    ),
)
@click.option(
    "--collectors",
    type=click.IntRange(1),
    help=_from_settings(
        "SIGHTLINE_COLLECTORS", "collectors", "Collector processes sharing the port."
    ),
)
@pass_context
def up(
    obj: Context,
    host: str | None,
    port: int | None,
    fsync: str | None,
    trusted_proxies: str | None,
    workers: int | None,
    collectors: int | None,
) -> None:
    """Run everything: Redis (embedded unless REDIS_URL), store, workers and collector.

    Migrates the database first. A worker that dies is restarted within a second.
    """
    from sightline.up import run_up

    run_up(
        obj.settings.overridden(
            host=host,
            port=port,
            fsync=fsync,
            trusted_proxies=trusted_proxies,
            workers=workers,
            collectors=collectors,
        )
    )


@main.command()
@host_option
@port_option
@proxies_option
@pass_context
def collector(
    obj: Context, host: str | None, port: int | None, trusted_proxies: str | None
) -> None:
    """Run the HTTP collector alone (the schema must be current).

    SIGHTLINE_COLLECTORS=N runs N processes on the one port.
    """
    from sightline.embedded import prepare_redis
    from sightline.up import collector_server

    settings = obj.settings.overridden(host=host, port=port, trusted_proxies=trusted_proxies)
    with stop_on_sigterm(), ExitStack() as stack:
        settings = prepare_redis(settings, stack)
        check_redis(settings)
        check_spool(settings)
        open_store(settings).dispose()
        serve, _ = collector_server(settings)
        serve()


@main.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@pass_context
def worker(obj: Context, burst: bool) -> None:
    """Run one RQ worker process on Sightline's queue (the schema must be current)."""
    from sightline.embedded import prepare_redis
    from worker.main import run_worker

    with ExitStack() as stack:
        settings = prepare_redis(obj.settings, stack)
        check_redis(settings)
        open_store(settings).dispose()
        run_worker(settings, burst=burst)


@main.command()
@pass_context
def migrate(obj: Context) -> None:
    """Bring the database schema up to date (Alembic).

    Also checks that REDIS_URL, when set, answers.
    """
    if obj.settings.redis_url:
        check_redis(obj.settings)
    open_store(obj.settings, migrate=True).dispose()
    shown = hide_database_password(obj.settings.sqlalchemy_url)
    click.echo(f"database at the newest revision: {shown}")


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

    engine = obj.store()
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
    engine = obj.store()
    with engine.begin() as conn:
        product = update_product(conn, product_id, ProductSettings(allowed_origins=origins))
    if product is None:
        raise click.ClickException(f"no product {product_id!r}")
    click.echo(f"{product.id} origins: {', '.join(product.allowed_origins) or 'any origin'}")


@products.command("limits")
@click.argument("product_id")
@click.option("--per-key", type=click.FloatRange(0), default=0, show_default=True)
@click.option("--per-ip", type=click.FloatRange(0), default=0, show_default=True)
@pass_context
def products_limits(obj: Context, product_id: str, per_key: float, per_ip: float) -> None:
    """Rate limits in events per second: for the product's keys, all clients together
    (--per-key), and for one client address (--per-ip); 0 is no limit. Over a limit a
    request gets 429 with Retry-After. Each collector process counts on its own, unless
    SIGHTLINE_SHARED_RATE_LIMITS is on (counted in Redis for all of them)."""
    from sightline.store.products import set_rate_limits

    engine = obj.store()
    with engine.begin() as conn:
        product = set_rate_limits(conn, product_id, per_key=per_key, per_ip=per_ip)
    if product is None:
        raise click.ClickException(f"no product {product_id!r}")
    click.echo(f"{product.id}: {per_key:g} events/s per key, {per_ip:g} per address (0: no limit)")


@products.command("identity")
@click.argument("product_id")
@click.argument("mode", type=click.Choice(["cookieless", "first-party"]))
@click.option(
    "--server-cookie",
    is_flag=True,
    help="first-party: the collector also sets its HttpOnly sl_id cookie for pages of its site.",
)
@pass_context
def products_identity(obj: Context, product_id: str, mode: str, server_cookie: bool) -> None:
    """How pages recognise visitors: first-party (the default: an id kept on the device,
    and with --server-cookie the collector's own cookie too) or cookieless (nothing on
    the device: a visitor id the collector derives from a salt that rotates daily, the
    address and the user agent). Paste data-mode="cookieless" on the snippet's tag too."""
    from sightline.identity import IdentityMode
    from sightline.store.products import set_identity

    if server_cookie and mode == IdentityMode.COOKIELESS.value:
        raise click.UsageError("--server-cookie is for first-party only")
    engine = obj.store()
    with engine.begin() as conn:
        product = set_identity(conn, product_id, IdentityMode(mode), server_cookie=server_cookie)
    if product is None:
        raise click.ClickException(f"no product {product_id!r}")
    cookie = ", server cookie sl_id" if product.server_cookie else ""
    click.echo(f"{product.id}: identity {product.identity_mode.value}{cookie}")


@products.command("policy")
@click.argument("product_id")
@click.option(
    "--client-identity",
    type=click.Choice([c.value for c in ClientIdentity]),
    help="restricted (the default): the write-key policy; open: write keys may change "
    "what server keys may.",
)
@pass_context
def products_policy(obj: Context, product_id: str, client_identity: str | None) -> None:
    """What the product's public write keys may change of users and accounts; without an
    option, show it. restricted: they create users and accounts and set what the page
    knows, but e-mail, mobile, payment ids, account parents and whatever a server key set
    are server-only (README, "What a write key can change"). Workers pick the change up
    within 5 seconds."""
    from sightline.store.products import get_product, set_client_identity

    engine = obj.store()
    with engine.begin() as conn:
        product = (
            set_client_identity(conn, product_id, ClientIdentity(client_identity))
            if client_identity is not None
            else get_product(conn, product_id)
        )
    if product is None:
        raise click.ClickException(f"no product {product_id!r}")
    click.echo(f"{product.id}: client identity {product.client_identity.value}")


@products.command("keys")
@click.argument("product_id")
@click.argument("action", type=click.Choice(["add", "revoke"]))
@click.argument("value")
@pass_context
def products_keys(obj: Context, product_id: str, action: str, value: str) -> None:
    """Rotate a product's keys: ``add write|server`` prints a new key; ``revoke KEY``.

    \b
    sightline products keys ID add write      (then deploy the new key everywhere)
    sightline products keys ID revoke wk_...  (then the old one stops working)

    Collectors stop accepting a revoked key within SIGHTLINE_KEY_REFRESH_SECONDS.
    """
    from sightline.store.products import KEY_PREFIXES, add_key, get_product, revoke_key

    engine = obj.store()
    with engine.begin() as conn:
        product = get_product(conn, product_id)
        if product is None:
            raise click.ClickException(f"no product {product_id!r}")
        if action == "add":
            if value not in KEY_PREFIXES:
                raise click.BadParameter("write or server", param_hint="VALUE")
            click.echo(add_key(conn, product_id, value))
            return
        kind = "write" if value in product.write_keys else "server"
        remaining = product.write_keys if kind == "write" else product.server_keys
        if value in remaining and len(remaining) == 1:
            raise click.ClickException(f"that is the product's last {kind} key: add another first")
        if not revoke_key(conn, product_id, value):
            raise click.ClickException(f"{product_id} has no such live key")
    click.echo(
        f"revoked; collectors stop accepting it within {obj.settings.key_refresh_seconds:g} s"
    )


@products.command("ids")
@click.argument("product_id")
@click.argument("action", type=click.Choice(["list", "add", "remove"]))
@click.argument("format", required=False)
@click.argument("value", required=False)
@pass_context
def products_ids(
    obj: Context, product_id: str, action: str, format: str | None, value: str | None
) -> None:
    """Other trackers' names for PRODUCT_ID, so pages already tagged keep working.

    \b
    sightline products ids ID add plausible shop.example     (a site domain)
    sightline products ids ID add umami 4f6c...-...          (a website id)
    sightline products ids ID add matomo 3                   (a site id)
    sightline products ids ID add ga4 G-ABC123               (a measurement id)
    sightline products ids ID add posthog phc_...            (a project API key)
    sightline products ids ID add snowplow my-app            (an app id)

    The product's write key is accepted in all of those places without registering.
    """
    from sightline.store.products import (
        IDENTIFIER_FORMATS,
        IdentifierTaken,
        add_identifier,
        get_product,
        remove_identifier,
    )

    engine = obj.store()
    with engine.begin() as conn:
        if get_product(conn, product_id) is None:
            raise click.ClickException(f"no product {product_id!r}")
        if action != "list":
            if format is None or value is None:
                raise click.UsageError(f"{action} needs FORMAT and VALUE")
            if format not in IDENTIFIER_FORMATS:
                raise click.BadParameter(
                    f"one of {', '.join(IDENTIFIER_FORMATS)}", param_hint="FORMAT"
                )
            try:
                if action == "add":
                    canonical = add_identifier(conn, product_id, format, value)
                    click.echo(f"{product_id}: {format} {canonical} added")
                elif not remove_identifier(conn, product_id, format, value):
                    raise click.ClickException(f"{format} {value!r} does not name {product_id}")
                else:
                    click.echo(f"{product_id}: {format} {value} removed")
            except IdentifierTaken as exc:
                raise click.ClickException(str(exc)) from None
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="VALUE") from None
            click.echo("Collectors pick it up within SIGHTLINE_KEY_REFRESH_SECONDS.", err=True)
            return
        product = get_product(conn, product_id)
    assert product is not None
    for name, values in sorted(product.identifiers.items()):
        for item in values:
            click.echo(f"{name}  {item}")


@products.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
def products_list(obj: Context, as_json: bool) -> None:
    """List products with their keys and settings."""
    from sightline.store.products import list_products

    engine = obj.store()
    with read_connection(engine) as conn:
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

    engine = obj.store()
    with read_connection(engine) as conn:
        found = recent_events(conn, product_id=product_id, limit=limit)
    for event in found:
        if as_json:
            click.echo(_json.encode(event))
        else:
            who = printable(event.user_id or event.anonymous_id or "-")
            name = printable(event.name)
            click.echo(
                f"{event.timestamp.isoformat()}  {event.type.value:<10} {name:<30} "
                f"{who}  [{event.dialect}] {event.product_id}"
            )


_EXPORT_TIME = click.DateTime(
    formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"]
)


@events.command("export")
@click.option("--format", "format", type=click.Choice(["ndjson", "csv"]), default="ndjson")
@click.option("--product", "product_id", help="Only this product's events.")
@click.option("--from", "start", type=_EXPORT_TIME, help="At or after this time (UTC if no zone).")
@click.option("--to", "end", type=_EXPORT_TIME, help="Before this time (UTC if no zone).")
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File (default stdout).")
@pass_context
def events_export(
    obj: Context,
    format: str,
    product_id: str | None,
    start: datetime | None,
    end: datetime | None,
    output: Any,
) -> None:
    """Every stored event, newest first, streamed as NDJSON or CSV (constant memory).

    CSV cells that start with = + - @, a tab or a CR are prefixed with ' so a
    spreadsheet never runs them.
    """
    from sightline.export import chunks
    from sightline.store.reads import EventQuery, iter_events

    def utc(value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    query = EventQuery(product_id=product_id, start=utc(start), end=utc(end))
    engine = obj.store()
    try:
        for chunk in chunks(iter_events(engine, query), format):
            output.write(chunk)
        output.flush()
    finally:
        engine.dispose()


@main.group()
def tokens() -> None:
    """Read credentials: per-product read keys and admin tokens (for /api/v1 and /ui)."""


@tokens.command("create")
@click.option("--admin", is_flag=True, help="An admin token: reads every product, replays.")
@click.option("--product", "product_id", help="A read key of this product.")
@click.option("--name", default="", help="What it is for (shown by `tokens list`).")
@pass_context
def tokens_create(obj: Context, admin: bool, product_id: str | None, name: str) -> None:
    """Create a token and print it, once: only its SHA-256 is kept."""
    from sightline.store.tokens import NoSuchProduct, TokenKind, create_token

    if admin == (product_id is not None):
        raise click.UsageError("give --admin, or --product ID")
    kind = TokenKind.ADMIN if admin else TokenKind.READ
    engine = obj.store()
    try:
        with engine.begin() as conn:
            record, token = create_token(conn, kind, product_id=product_id, name=name)
    except NoSuchProduct as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {record.kind.value} token {record.id} ({printable(record.name)})")
    click.echo(f"  token (shown once, keep it secret): {token}")


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked ones.")
@pass_context
def tokens_list(obj: Context, include_revoked: bool) -> None:
    """Tokens by id, prefix and name (never the token itself)."""
    from sightline.store.tokens import list_tokens

    engine = obj.store()
    with read_connection(engine) as conn:
        found = list_tokens(conn, include_revoked=include_revoked)
    for record in found:
        scope = "every product" if record.is_admin else record.product_id
        revoked = f"  revoked {record.revoked_at.isoformat()}" if record.revoked_at else ""
        click.echo(
            f"{record.id}  {record.kind.value:<5}  {record.prefix}...  {scope}  "
            f"{printable(record.name)}  created {record.created_at.isoformat()}{revoked}"
        )


@tokens.command("revoke")
@click.argument("token_id")
@pass_context
def tokens_revoke(obj: Context, token_id: str) -> None:
    """Revoke a token at once (its dashboard sessions end too)."""
    from sightline.store.tokens import revoke_token

    engine = obj.store()
    with engine.begin() as conn:
        record = revoke_token(conn, token_id)
    if record is None:
        raise click.ClickException(f"no token {token_id!r}")
    click.echo(f"{record.id} revoked")


@tokens.command("link")
@host_option
@port_option
@pass_context
def tokens_link(obj: Context, host: str | None, port: int | None) -> None:
    """Print a new one-time dashboard login link (like the one `sightline up` prints)."""
    from sightline.dashboard import LOGIN_CODE_TTL, dashboard_link
    from sightline.embedded import prepare_redis

    settings = obj.settings.overridden(host=host, port=port)
    with ExitStack() as stack:
        settings = prepare_redis(settings, stack)
        check_redis(settings)
        engine = obj.store()
        try:
            link = dashboard_link(settings, engine)
        finally:
            engine.dispose()
    click.echo(f"{link}  (logs in once, within {LOGIN_CODE_TTL // 60} minutes)")


@main.group()
def retention() -> None:
    """Removing old events (SIGHTLINE_RETENTION_DAYS; the workers also do it hourly)."""


@retention.command("run")
@click.option(
    "--days",
    type=click.IntRange(1),
    default=None,
    help="Keep this many days (default: SIGHTLINE_RETENTION_DAYS).",
)
@pass_context
def retention_run(obj: Context, days: int | None) -> None:
    """Create the coming months' partitions (PostgreSQL) and remove the events, keys,
    sessions and daily rollups older than the retention: whole months dropped on
    PostgreSQL, deletes of at most 5,000 rows per transaction elsewhere."""
    from sightline.store.partitions import apply_retention, ensure_partitions, retention_horizon

    days = days or obj.settings.retention_days
    if days is None:
        raise click.UsageError("retention is off: set SIGHTLINE_RETENTION_DAYS or pass --days")
    engine = obj.store()
    try:
        with engine.begin() as conn:
            created = ensure_partitions(conn, since=retention_horizon(conn, days))
        done = apply_retention(engine, days)
    except sa.exc.OperationalError as exc:  # a lock not granted in time, an outage
        raise click.ClickException(f"retention not finished, run it again: {exc.orig}") from None
    finally:
        engine.dispose()
    click.echo(f"kept {days} days: removed everything before {done.horizon.isoformat()}")
    click.echo(f"  partitions created: {', '.join(created) or 'none'}")
    click.echo(f"  partitions dropped: {', '.join(done.dropped) or 'none'}")
    deleted = ", ".join(f"{table} {n}" for table, n in sorted(done.deleted.items()))
    click.echo(f"  rows deleted: {deleted or 'none'}")


@main.group()
def users() -> None:
    """People: erase one (right to erasure) and suppress their later events."""


@users.command("forget")
@click.argument("product_id")
@click.argument("user_id")
@click.option(
    "--chunk-size",
    type=click.IntRange(1),
    default=5_000,
    show_default=True,
    help="Most rows deleted per transaction.",
)
@pass_context
def users_forget(obj: Context, product_id: str, user_id: str, chunk_size: int) -> None:
    """Erase USER_ID of PRODUCT_ID: their events (under every alias), profile, aliases,
    account links, sessions and the dead letters naming them; put every id on the
    suppression list, so the worker drops their later events (queued ones too). Prints
    the receipt (no personal data). Run it again to finish an interrupted erasure."""
    from sightline.store.erasure import CLI, forget_user
    from sightline.store.products import get_product

    engine = obj.store()
    with read_connection(engine) as conn:
        if get_product(conn, product_id) is None:
            raise click.ClickException(f"no product {printable(product_id)!r}")
    erasure = forget_user(engine, product_id, user_id, requested_by=CLI, chunk_size=chunk_size)
    receipt = _purge_live(obj.settings, engine, erasure) or erasure.receipt
    deleted = ", ".join(f"{table} {n}" for table, n in sorted(receipt.deleted.items()))
    click.echo(f"erased; receipt {receipt.reference} ({receipt.requests} request(s))")
    click.echo(f"  rows, over every run: {deleted or 'none'}")
    click.echo(f"  {erasure.transactions} transactions this run")


def _purge_live(settings: Settings, engine: sa.Engine, erasure: Any) -> Any:
    """The erased person's entries out of the live stream in Redis (best effort: the
    erasure is done without it); the receipt counting them, or ``None``."""
    from sightline.embedded import prepare_redis
    from sightline.live_erasure import purge_live
    from sightline.redisconn import connect
    from sightline.store.erasure import count_outside

    receipt = erasure.receipt
    try:
        with ExitStack() as stack:
            settings = prepare_redis(settings, stack)
            redis = connect(settings, timeout=5.0)
            try:
                live = purge_live(redis, settings.queue_name, receipt.product_id, erasure.ids)
            finally:
                redis.close()
    except (EmbeddedRedisError, OSError) as exc:
        click.echo(f"  the live stream in Redis was not purged ({exc}): it rolls over", err=True)
        return None
    if not live:
        return None
    return count_outside(engine, receipt.reference, {"live_stream": live})


@users.command("receipts")
@click.option("--product", "product_id", help="Only this product's erasures.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def users_receipts(obj: Context, product_id: str | None, as_json: bool) -> None:
    """Erasure receipts, newest first: reference, who asked, when, rows per table."""
    from sightline.store.erasure import list_receipts

    engine = obj.store()
    with read_connection(engine) as conn:
        found = list_receipts(conn, product_id)
    for receipt in found:
        if as_json:
            click.echo(_json.encode(receipt))
            continue
        done = receipt.completed_at.isoformat() if receipt.completed_at else "unfinished"
        deleted = ", ".join(f"{table} {n}" for table, n in sorted(receipt.deleted.items()))
        click.echo(
            f"{receipt.reference}  {receipt.product_id}  {receipt.requested_by}  "
            f"{receipt.requested_at.isoformat()}  {done}  {deleted}"
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

    engine = obj.store()
    with read_connection(engine) as conn:
        found = list_dead_letters(conn, include_replayed=include_replayed)
    for letter in found:
        if as_json:
            click.echo(_json.encode(letter))
        else:
            click.echo(
                f"#{letter.id}  {letter.created_at.isoformat()}  {letter.reason}: "
                f"{printable(letter.detail)}"
            )


@deadletters.command("replay")
@pass_context
def deadletters_replay(obj: Context) -> None:
    """Run dead letters through this version's worker again (idempotent)."""
    from sightline.store.queries import list_dead_letters, mark_replayed
    from worker.batch import BatchProcessor
    from worker.enricher import Enricher

    engine = obj.store()
    with read_connection(engine) as conn:
        letters = list_dead_letters(conn)
    if not letters:
        click.echo("no dead letters to replay")
        return
    processor = BatchProcessor(engine, Enricher.from_settings(obj.settings))
    result = processor.process([letter.envelope for letter in letters])
    with engine.begin() as conn:
        mark_replayed(conn, [letter.id for letter in letters], datetime.now(UTC))
    click.echo(
        f"replayed {len(letters)}: {result.stored} stored, {result.duplicates} already stored, "
        f"{result.dead_letters} dead again"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
