"""The Fuzy dialect: products, accounts, users and events (seeds/000_750887f3fe2e5c85.txt).

The page names the concepts and endpoints but no field names, so the wire
schema below is ours, kept to the page's words: an event has a ``description``
(its name), a ``timestamp``, a ``user`` and/or ``account``, and a ``product``
(the key's product when left out). A user object may say which account it
belongs to and give its payment-processor ids; an account may name its parent
(``parent_id``, or a nested ``parent`` object, to any depth). Sending those in
events is enough; ``/v3/account`` and ``/v3/user`` are for the rest.

Auth is a server key, as ``Authorization: Bearer <key>`` or ``X-API-Key``:
no or an unknown key is 401, a write key or another product's resources 403.
Invalid input is 400 naming every failing field.

Accounts and users (from events or their own endpoints) go through the queue as
envelopes, like events: ordered with the events that mention them, idempotent
(the message id of their ``group`` / ``identify`` event) and never lost when the
database is away. The page does not need the stored record in the answer, so
they are 202; ``GET`` reads back what the worker stored. Products are different:
``POST /v3/product`` must return the new product's keys, so products are written
to the store at once, and the collector's key table is reloaded so the keys work
on the next request.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize, bearer_token
from collector.bodies import read_body
from collector.decoding import decode
from collector.dialects.fields import (
    Email,
    Id,
    Mobile,
    Name,
    PaymentIds,
    Properties,
    Text,
    client_context,
)
from collector.directory import Grant, KeyKind
from collector.envelope import Envelope
from collector.errors import FieldError, Forbidden, InvalidInput, NotFound
from collector.intake import Payload, accept
from sightline.ids import derived_id
from sightline.model import (
    AccountChange,
    AttributeOp,
    AttributeOpKind,
    BotHandling,
    Event,
    EventType,
    IpHandling,
    Normalised,
    UserChange,
)
from sightline.origins import parse_origin
from sightline.store.lookups import (
    AccountRecord,
    UserRecord,
    create_managed_product,
    get_account,
    get_user,
    list_accounts,
    list_users,
    managed_products,
    read,
    write,
)
from sightline.store.products import Product, ProductSettings, get_product, update_product

NAME = "fuzy"
MAX_BODY_BYTES = 512 * 1024
MAX_ITEMS = 500
MAX_ACCOUNT_DEPTH = 32

ProductName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Origin = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


# -- wire schema -----------------------------------------------------------------------


class FuzyAccount(msgspec.Struct, kw_only=True):
    """A corporate customer; ``parent`` / ``parent_id`` place it under another one."""

    id: Id
    name: Name | None = None
    parent_id: Id | None = None
    parent: FuzyAccount | None = None
    payment_ids: PaymentIds | None = None
    traits: Properties | None = None


class FuzyUser(msgspec.Struct, kw_only=True):
    """A person; ``account`` / ``account_id`` say which account they belong to."""

    id: Id
    name: Name | None = None
    email: Email | None = None
    mobile: Mobile | None = None
    account_id: Id | None = None
    account: FuzyAccount | None = None
    payment_ids: PaymentIds | None = None
    traits: Properties | None = None


class FuzyContext(msgspec.Struct, kw_only=True):
    """Where the event happened; ``ip`` / ``userAgent`` default to the HTTP peer's."""

    ip: Text | None = None
    userAgent: Text | None = None
    url: Text | None = None
    path: Text | None = None
    title: Text | None = None
    referrer: Text | None = None


FuzyEventType = Literal["page_view", "click", "notification", "screen_view", "custom"]
_EVENT_TYPES = {
    "page_view": EventType.PAGE,
    "click": EventType.CLICK,
    "screen_view": EventType.SCREEN,
    "notification": EventType.TRACK,
    "custom": EventType.TRACK,
}


class FuzyEvent(msgspec.Struct, kw_only=True):
    """One event: a description, a timestamp, a user and/or account, a product."""

    description: Name
    timestamp: datetime
    id: Id | None = None
    """The client's idempotency key; a retry with the same id stores nothing twice."""
    product: Id | None = None
    type: FuzyEventType = "custom"
    user: FuzyUser | None = None
    user_id: Id | None = None
    account: FuzyAccount | None = None
    account_id: Id | None = None
    properties: Properties | None = None
    context: FuzyContext | None = None


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


# -- validation ------------------------------------------------------------------------


def _items(raw: bytes, schema: type[Any], what: str) -> list[tuple[Any, msgspec.Raw]]:
    """A body holding one object or a list of them, each decoded and checked.

    Every failing field of every item is reported at once, named ``[i].field`` in a list.
    """
    if raw.lstrip()[:1] != b"[":
        single = decode(raw, schema, what=what)
        errors: list[FieldError] = []
        _check(single, "", errors)
        if errors:
            raise InvalidInput(f"invalid {what}", errors)
        return [(single, msgspec.Raw(raw))]
    items = decode(raw, list[msgspec.Raw], what=what)
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput(f"invalid {what}", [FieldError("$", f"send 1 to {MAX_ITEMS} items")])
    decoded: list[tuple[Any, msgspec.Raw]] = []
    errors = []
    for index, item in enumerate(items):
        at = f"[{index}]."
        try:
            value = decode(bytes(item), schema, what=what, prefix=at)
        except InvalidInput as exc:
            errors.extend(exc.errors)
            continue
        _check(value, at, errors)
        decoded.append((value, item))
    if errors:
        raise InvalidInput(f"invalid {what}", errors)
    return decoded


def _check(item: Any, at: str, errors: list[FieldError]) -> None:
    """What the schema cannot say: consistent ids, no cycles, who an event is about."""
    if isinstance(item, FuzyEvent):
        _check_event(item, at, errors)
    elif isinstance(item, FuzyUser):
        _check_user(item, at, errors)
    elif isinstance(item, FuzyAccount):
        _check_account(item, at, errors)


def _check_account(account: FuzyAccount, at: str, errors: list[FieldError]) -> None:
    depth, current, seen = 0, account, {account.id}
    while current.parent is not None:
        depth += 1
        if current.parent_id is not None and current.parent_id != current.parent.id:
            errors.append(FieldError(at + "parent_id", "differs from parent.id"))
        current = current.parent
        at += "parent."
        if current.id in seen:
            errors.append(FieldError(at + "id", "an account cannot be its own ancestor"))
            return
        seen.add(current.id)
        if depth > MAX_ACCOUNT_DEPTH:
            errors.append(FieldError(at.rstrip("."), f"more than {MAX_ACCOUNT_DEPTH} levels"))
            return
    if current.parent_id is not None and current.parent_id in seen:
        errors.append(FieldError(at + "parent_id", "an account cannot be its own ancestor"))


def _check_user(user: FuzyUser, at: str, errors: list[FieldError]) -> None:
    if user.account is not None:
        if user.account_id is not None and user.account_id != user.account.id:
            errors.append(FieldError(at + "account_id", "differs from account.id"))
        _check_account(user.account, at + "account.", errors)


def _check_event(event: FuzyEvent, at: str, errors: list[FieldError]) -> None:
    named = (event.user, event.user_id, event.account, event.account_id)
    if all(v is None for v in named):
        errors.append(FieldError(at + "user", "an event needs a user or an account"))
    if event.user is not None:
        if event.user_id is not None and event.user_id != event.user.id:
            errors.append(FieldError(at + "user_id", "differs from user.id"))
        _check_user(event.user, at + "user.", errors)
    if event.account is not None:
        if event.account_id is not None and event.account_id != event.account.id:
            errors.append(FieldError(at + "account_id", "differs from account.id"))
        _check_account(event.account, at + "account.", errors)


# -- endpoints -------------------------------------------------------------------------


async def _grant(request: Request) -> Grant:
    key = bearer_token(request) or request.headers.get("x-api-key")
    return await authorize(request.state.directory, key, require=KeyKind.SERVER)


async def _ingest(request: Request, schema: type[Any], kind: str) -> Response:
    raw = await read_body(request, MAX_BODY_BYTES)
    items = _items(raw, schema, kind)
    grant = await _grant(request)
    for index, (item, _) in enumerate(items):
        if isinstance(item, FuzyEvent) and item.product not in (None, grant.product.id):
            at = "product" if len(items) == 1 else f"[{index}].product"
            raise Forbidden(
                "this key is not for that product",
                [FieldError(at, "send events for a product with that product's key")],
            )
    await accept(
        request,
        dialect=NAME,
        product_id=grant.product.id,
        payloads=[Payload(kind, body) for _, body in items],
    )
    answer = FuzyAccepted(success=True, accepted=len(items))
    return Response(msgspec.json.encode(answer), status_code=202, media_type="application/json")


async def track_event(request: Request) -> Response:
    return await _ingest(request, FuzyEvent, "event")


async def put_accounts(request: Request) -> Response:
    return await _ingest(request, FuzyAccount, "account")


async def put_users(request: Request) -> Response:
    return await _ingest(request, FuzyUser, "user")


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


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
    raw = await read_body(request, MAX_BODY_BYTES)
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
    raw = await read_body(request, MAX_BODY_BYTES)
    body = decode(raw, FuzyProductChange, what="product")
    grant = await _grant(request)
    wanted = str(request.path_params["id"])
    settings = _settings(body)

    def change(conn: Any) -> Product | Literal[False] | None:
        allowed = {p.id for p in managed_products(conn, grant.product.id)}
        if wanted not in allowed:
            return False if get_product(conn, wanted) is not None else None
        return update_product(conn, wanted, settings)

    product = await asyncio.to_thread(write, request.state.engine, change)
    if product is None:
        raise NotFound(f"no product {wanted!r}", [FieldError("id", "no such product")])
    if product is False:
        raise Forbidden("this key may not configure that product", [FieldError("id", "not yours")])
    await request.state.directory.reload()
    return _json(product)


# -- mapping to the canonical model (worker side, pure) --------------------------------


def _account_chain(account: FuzyAccount | None) -> list[AccountChange]:
    """``account`` and its nested parents as changes, the root first."""
    chain: list[AccountChange] = []
    current = account
    while current is not None:
        parent = current.parent.id if current.parent is not None else current.parent_id
        chain.append(
            AccountChange(
                external_id=current.id,
                name=current.name,
                parent_external_id=parent,
                traits=dict(current.traits) if current.traits else None,
                payment_ids=dict(current.payment_ids) if current.payment_ids else None,
            )
        )
        current = current.parent
    return chain[::-1]


def _user_change(user: FuzyUser) -> UserChange:
    traits = dict(user.traits or {})
    if user.name is not None:
        traits["name"] = user.name
    return UserChange(
        external_id=user.id,
        account_external_id=user.account.id if user.account is not None else user.account_id,
        email=user.email,
        mobile=user.mobile,
        payment_ids=dict(user.payment_ids) if user.payment_ids else None,
        ops=tuple(
            AttributeOp(k, AttributeOpKind.SET if v is not None else AttributeOpKind.REMOVE, v)
            for k, v in traits.items()
        ),
    )


def _context(given: FuzyContext | None, envelope: Envelope) -> dict[str, Any]:
    given = given or FuzyContext()
    context = client_context(given.ip, given.userAgent, envelope.ip, envelope.user_agent)
    page = {
        k: v
        for k, v in (
            ("url", given.url),
            ("path", given.path),
            ("title", given.title),
            ("referrer", given.referrer),
        )
        if v is not None
    }
    if page:
        context["page"] = page
    return context


def _base_event(envelope: Envelope, **fields: Any) -> Event:
    return Event(
        id="",
        message_id=derived_id(envelope.id, "0"),
        product_id=envelope.product_id,
        timestamp=envelope.received_at,
        received_at=envelope.received_at,
        context=client_context(None, None, envelope.ip, envelope.user_agent),
        dialect=NAME,
        **fields,
    )


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind == "account":
        account = msgspec.convert(envelope.body, FuzyAccount)
        event = _base_event(
            envelope,
            name="group",
            type=EventType.GROUP,
            account_id=account.id,
            properties=dict(account.traits or {}),
        )
        return Normalised(events=(event,), accounts=tuple(_account_chain(account)))
    if envelope.kind == "user":
        user = msgspec.convert(envelope.body, FuzyUser)
        change = _user_change(user)
        event = _base_event(
            envelope,
            name="identify",
            type=EventType.IDENTIFY,
            user_id=user.id,
            account_id=change.account_external_id,
            properties=dict(user.traits or {}),
        )
        return Normalised(
            events=(event,), users=(change,), accounts=tuple(_account_chain(user.account))
        )
    return _normalise_event(envelope)


def _normalise_event(envelope: Envelope) -> Normalised:
    body = msgspec.convert(envelope.body, FuzyEvent)
    user = body.user
    users = (_user_change(user),) if user is not None else ()
    accounts = _account_chain(user.account if user is not None else None)
    accounts += _account_chain(body.account)
    account_id = (
        body.account.id
        if body.account is not None
        else body.account_id or (users[0].account_external_id if users else None)
    )
    event = Event(
        id="",
        message_id=body.id or derived_id(envelope.id, "0"),
        product_id=envelope.product_id,
        name=body.description,
        type=_EVENT_TYPES[body.type],
        timestamp=body.timestamp,
        original_timestamp=body.timestamp,
        received_at=envelope.received_at,
        sent_at=envelope.sent_at,
        user_id=user.id if user is not None else body.user_id,
        account_id=account_id,
        properties=dict(body.properties or {}),
        context=_context(body.context, envelope),
        dialect=NAME,
    )
    return Normalised(events=(event,), users=users, accounts=tuple(accounts))
