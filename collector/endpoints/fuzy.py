"""Fuzy's ``/v3/event``, ``/v3/account``, ``/v3/user`` and ``/v3/product``.

The wire schema and mapping are ``sightline.dialects.fuzy``.

A key travels as ``x-api-key`` (fuzy-js's header) or ``Authorization: Bearer <key>``:
no or an unknown key is 401. ``/v3/event`` takes a write key, since fuzy-js runs in
the browser with its token in the page (the product's allowed origins apply), or a
server key; ``/v3/product``, ``/v3/account`` and ``/v3/user`` need a server key (a
write key is 403), and another product's resources are 403.

Events, accounts and users go through the queue as envelopes (202); ``GET`` reads
back what the worker stored. Products are different: ``POST /v3/product`` must
return the new product's keys, so products are written to the store at once, and
the collector's key table is reloaded so the keys work on the next request.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize, bearer_token
from collector.bodies import read_body
from collector.directory import Grant, KeyKind
from collector.intake import Payload, accept
from collector.routing import (
    INGEST_ERRORS,
    READ_ERRORS,
    SERVER_KEY_SCHEMES,
    Endpoint,
    ErrorBody,
    Handler,
    path_id,
)
from sightline.dialects import fuzy
from sightline.dialects.decoding import decode
from sightline.dialects.fuzy_accounts import ACCOUNT_KIND, USER_KIND
from sightline.errors import FieldError, Forbidden, InvalidInput, NotFound
from sightline.model import BotHandling, IpHandling
from sightline.origins import parse_origin
from sightline.store.lookups import (
    AccountRecord,
    NotManaged,
    UserRecord,
    configure_managed_product,
    create_managed_product,
    get_account,
    get_user,
    list_accounts,
    list_users,
    managed_products,
    read,
    write,
)
from sightline.store.products import Product, ProductSettings, normalise_identifier

ProductName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Origin = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class FuzyProductCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ProductName
    is_enabled: bool | None = None
    channel_merging: bool | None = None
    allowed_origins: list[Origin] | None = None
    ip_handling: IpHandling | None = None
    bot_handling: BotHandling | None = None


class FuzyProductChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ProductName | None = None
    is_enabled: bool | None = None
    channel_merging: bool | None = None
    allowed_origins: list[Origin] | None = None
    ip_handling: IpHandling | None = None
    bot_handling: BotHandling | None = None


class FuzyAccepted(msgspec.Struct, kw_only=True):
    success: bool
    accepted: int


async def _grant(request: Request, require: KeyKind = KeyKind.SERVER) -> Grant:
    key = request.headers.get("x-api-key") or bearer_token(request)
    origin = request.headers.get("origin")
    return await authorize(request.state.directory, key, origin=origin, require=require)


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


IDENTIFIER_FORMAT = "fuzy"
"""Fuzy's product ids a product registered (``sightline products ids ID add fuzy <id>``)."""


async def _names_product(request: Request, product: str | None, grant: Grant) -> bool:
    """Whether an event's ``product`` is the key's: empty, its id, or a Fuzy id it registered.

    An existing fuzy-js integration that passes Fuzy's own product id keeps it: the
    product registers that id once, and events naming it are the key's product's.
    """
    if product is None or product == grant.product.id:
        return True
    try:
        canonical = normalise_identifier(IDENTIFIER_FORMAT, product)
    except ValueError:
        return False
    named = await request.state.directory.resolve_identifier(IDENTIFIER_FORMAT, canonical)
    return named is not None and named.product.id == grant.product.id


def _ingest(kind: str, require: KeyKind) -> Handler:
    async def ingest(request: Request) -> Response:
        raw = await read_body(request, fuzy.MAX_BODY_BYTES)
        items = fuzy.validate_items(raw, kind)
        grant = await _grant(request, require)
        for index, (item, _) in enumerate(items):
            if isinstance(item, fuzy.FuzyEvent) and not await _names_product(
                request, fuzy.text(item.product), grant
            ):
                at = "product" if len(items) == 1 else f"[{index}].product"
                raise Forbidden(
                    "this key is not for that product",
                    [FieldError(at, "send \"\" (the key's product) or the key's product id")],
                )
        await accept(
            request,
            dialect=fuzy.NAME,
            product_id=grant.product.id,
            key=grant.kind,
            payloads=[Payload(kind, body) for _, body in items],
        )
        return _json(FuzyAccepted(success=True, accepted=len(items)), 202)

    ingest.__name__ = ingest.__qualname__ = f"put_{kind}"
    return ingest


def _paging(request: Request) -> tuple[int, int]:
    errors: list[FieldError] = []
    values = []
    for name, default, top in (("limit", 100, 1000), ("offset", 0, 10**9)):
        raw = request.query_params.get(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            value = -1
        if not (1 if name == "limit" else 0) <= value <= top:
            errors.append(FieldError(name, f"must be an integer up to {top}"))
        values.append(value)
    if errors:
        raise InvalidInput("invalid paging", errors)
    return values[0], values[1]


async def get_accounts(request: Request) -> Response:
    grant = await _grant(request)
    limit, offset = _paging(request)
    pid = grant.product.id
    found: list[AccountRecord] = await asyncio.to_thread(
        read,
        request.state.engine,
        lambda conn: list_accounts(conn, pid, limit=limit, offset=offset),
    )
    return _json(found)


async def get_account_by_id(request: Request) -> Response:
    grant = await _grant(request)
    wanted = str(request.path_params["id"])
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: get_account(conn, grant.product.id, wanted)
    )
    if found is None:
        raise NotFound(f"no account {wanted!r}", [FieldError("id", "no such account")])
    return _json(found)


async def get_users(request: Request) -> Response:
    grant = await _grant(request)
    limit, offset = _paging(request)
    pid = grant.product.id
    found: list[UserRecord] = await asyncio.to_thread(
        read, request.state.engine, lambda conn: list_users(conn, pid, limit=limit, offset=offset)
    )
    return _json(found)


async def get_user_by_id(request: Request) -> Response:
    grant = await _grant(request)
    wanted = str(request.path_params["id"])
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: get_user(conn, grant.product.id, wanted)
    )
    if found is None:
        raise NotFound(f"no user {wanted!r}", [FieldError("id", "no such user")])
    return _json(found)


def _origins(origins: list[str] | None) -> tuple[str, ...] | None:
    """The allowed origins in the browser's form (see ``sightline.origins``), or 400."""
    if origins is None:
        return None
    parsed: list[str] = []
    errors: list[FieldError] = []
    for index, text in enumerate(origins):
        try:
            parsed.append(parse_origin(text))
        except ValueError as exc:
            errors.append(FieldError(f"allowed_origins[{index}]", str(exc)))
    if errors:
        raise InvalidInput("invalid allowed_origins", errors)
    return tuple(parsed)


def _settings(change: FuzyProductCreate | FuzyProductChange) -> ProductSettings:
    return ProductSettings(
        name=change.name,
        allowed_origins=_origins(change.allowed_origins),
        ip_handling=change.ip_handling,
        bot_handling=change.bot_handling,
        is_enabled=change.is_enabled,
        channel_merging=change.channel_merging,
    )


async def list_products(request: Request) -> Response:
    grant = await _grant(request)
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: managed_products(conn, grant.product.id)
    )
    return _json(found)


async def create_product(request: Request) -> Response:
    raw = await read_body(request, fuzy.MAX_BODY_BYTES)
    body = decode(raw, FuzyProductCreate, what="product")
    grant = await _grant(request)
    settings = _settings(body)
    product: Product = await asyncio.to_thread(
        write,
        request.state.engine,
        lambda conn: create_managed_product(conn, grant.product.id, body.name, settings),
    )
    await request.state.directory.reload()
    return _json(product, 201)


async def configure_product(request: Request) -> Response:
    raw = await read_body(request, fuzy.MAX_BODY_BYTES)
    body = decode(raw, FuzyProductChange, what="product")
    grant = await _grant(request)
    wanted = str(request.path_params["id"])
    settings = _settings(body)
    try:
        product = await asyncio.to_thread(
            write,
            request.state.engine,
            lambda conn: configure_managed_product(conn, grant.product.id, wanted, settings),
        )
    except NotManaged:
        raise Forbidden(
            "this key may not configure that product", [FieldError("id", "not yours")]
        ) from None
    if product is None:
        raise NotFound(f"no product {wanted!r}", [FieldError("id", "no such product")])
    await request.state.directory.reload()
    return _json(product)


def _server(
    path: str, methods: tuple[str, ...], handler: Handler, name: str, summary: str, **more: Any
) -> Endpoint:
    return Endpoint(
        path, methods, handler, f"fuzy.{name}", summary, key=KeyKind.SERVER,
        schemes=SERVER_KEY_SCHEMES, **more,
    )  # fmt: skip


def _ingest_endpoint(
    path: str, kind: str, name: str, summary: str, key: KeyKind = KeyKind.SERVER
) -> Endpoint:
    schema = fuzy.SCHEMAS[kind]
    return Endpoint(
        path,
        ("PUT", "POST"),
        _ingest(kind, key),
        f"fuzy.{name}",
        summary,
        key=key,
        schemes=SERVER_KEY_SCHEMES,
        request=schema | list[schema],  # type: ignore[valid-type]
        responses={202: FuzyAccepted, **INGEST_ERRORS},
    )


_PAGING = (
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
)

ENDPOINTS = (
    _server(
        "/v3/product",
        ("GET",),
        list_products,
        "list_products",
        "Fuzy: the key's product and the products it created",
        responses={200: list[Product], **READ_ERRORS},
    ),
    _server(
        "/v3/product",
        ("POST",),
        create_product,
        "create_product",
        "Fuzy: create a product (answers with its keys)",
        request=FuzyProductCreate,
        responses={201: Product, **INGEST_ERRORS},
    ),
    _server(
        "/v3/product/{id}",
        ("PUT",),
        configure_product,
        "configure_product",
        "Fuzy: configure a product",
        request=FuzyProductChange,
        responses={200: Product, 404: ErrorBody, **INGEST_ERRORS},
        parameters=path_id("product id"),
    ),
    _ingest_endpoint(
        "/v3/event",
        fuzy.EVENT_KIND,
        "track_event",
        "Fuzy: one event (fuzy-js's body) or a list",
        key=KeyKind.WRITE,
    ),
    _ingest_endpoint(
        "/v3/account", ACCOUNT_KIND, "put_accounts", "Fuzy: create or update accounts"
    ),
    _server(
        "/v3/account",
        ("GET",),
        get_accounts,
        "get_accounts",
        "Fuzy: stored accounts",
        responses={200: list[AccountRecord], **READ_ERRORS},
        parameters=_PAGING,
    ),
    _server(
        "/v3/account/{id}",
        ("GET",),
        get_account_by_id,
        "get_account",
        "Fuzy: one stored account",
        responses={200: AccountRecord, **READ_ERRORS},
        parameters=path_id("account id"),
    ),
    _ingest_endpoint("/v3/user", USER_KIND, "put_users", "Fuzy: create or update users"),
    _server(
        "/v3/user",
        ("GET",),
        get_users,
        "get_users",
        "Fuzy: stored users",
        responses={200: list[UserRecord], **READ_ERRORS},
        parameters=_PAGING,
    ),
    _server(
        "/v3/user/{id}",
        ("GET",),
        get_user_by_id,
        "get_user",
        "Fuzy: one stored user",
        responses={200: UserRecord, **READ_ERRORS},
        parameters=path_id("user id"),
    ),
)
