"""The read API under ``/api/v1/``: events, users, accounts, dead letters, live, export.

Every route here returns stored data and is declared ``reads=True``: it needs a read
credential (``collector.readauth``), never a write key. A product's read key sees that
product only (asking for another is a 403, an event of another is a 404); an admin
token or the dashboard session sees every product and alone may replay dead letters.
Queries are named functions of ``sightline.store.reads`` run in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from collector.groupcommit import write_async
from collector.live import LiveHub, LiveResponse
from collector.readauth import Reader, require_reader
from collector.routing import READ_ERRORS, Endpoint, Handler, Schema
from sightline.errors import FieldError, InvalidInput, NotFound
from sightline.export import FORMATS, MEDIA, chunks
from sightline.model import EventType
from sightline.store.lookups import read, write
from sightline.store.products import list_products
from sightline.store.queries import DeadLetterRecord, mark_replayed
from sightline.store.reads import (
    AccountPage,
    AccountProfile,
    BadCursor,
    DeadLetterPage,
    EventDetail,
    EventPage,
    EventQuery,
    UserPage,
    UserProfile,
    account_page,
    account_profile,
    dead_letter_page,
    dead_letters_to_replay,
    get_dead_letter,
    get_event,
    iter_events,
    list_events,
    user_page,
    user_profile,
)

PREFIX = "/api/v1"
MAX_LIMIT = 500
REPLAY_JOB_SIZE = 500
PROPERTY_PARAM = "property."
_json = msgspec.json.Encoder()


def _ok(value: Any, status: int = 200) -> Response:
    return Response(_json.encode(value), status_code=status, media_type="application/json")


def _bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", [FieldError(field, reason)])


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, "an ISO 8601 time, e.g. 2026-11-30T12:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _limit(request: Request, default: int = 50) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _many(request: Request, name: str) -> tuple[str, ...]:
    """A repeatable parameter, each value possibly comma-separated."""
    return tuple(
        part for value in request.query_params.getlist(name) for part in value.split(",") if part
    )


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise _bad(name, "true or false")


def _text(value: str, name: str) -> str:
    if len(value) > 255 or "\x00" in value:
        raise _bad(name, "at most 255 characters, no NUL")
    return value


def event_query(request: Request, reader: Reader) -> EventQuery:
    """The filters of an events request, checked; the product scoped to what may be read."""
    product = reader.product(request.query_params.get("product") or None)
    types = _many(request, "type")
    known = {t.value for t in EventType}
    for kind in types:
        if kind not in known:
            raise _bad("type", f"one of {', '.join(sorted(known))}")
    properties: list[tuple[tuple[str, ...], str]] = []
    for name, value in request.query_params.multi_items():
        if name.startswith(PROPERTY_PARAM):
            path = tuple(name[len(PROPERTY_PARAM) :].split("."))
            if not all(path) or len(path) > 8:
                raise _bad(name, "property.<key>[.<key>...]=<value>, at most 8 keys deep")
            properties.append((tuple(_text(k, name) for k in path), _text(value, name)))
    user = request.query_params.get("user") or None
    account = request.query_params.get("account") or None
    if (user or account) and product is None:
        raise _bad("product", "a user or account filter needs a product")
    start, end = _time(request, "from"), _time(request, "to")
    return EventQuery(
        product_id=product,
        types=types,
        # Names may hold commas: repeat the parameter for several.
        names=tuple(_text(n, "name") for n in request.query_params.getlist("name") if n),
        start=start,
        end=end,
        user=_text(user, "user") if user else None,
        account=_text(account, "account") if account else None,
        properties=tuple(properties),
        include_bots=not _flag(request, "exclude_bots"),
    )


# -- session and products ------------------------------------------------------------


class SessionInfo(msgspec.Struct, kw_only=True):
    admin: bool
    product_id: str | None
    """The one product a read key reads; ``null`` for an admin (every product)."""
    token_name: str
    csrf: str | None = None
    """With the dashboard session: send it as ``X-Sightline-CSRF`` on POST and DELETE."""


class ProductSummary(msgspec.Struct, kw_only=True):
    id: str
    name: str
    write_keys: list[str]
    """Public: the snippet carries them."""
    allowed_origins: list[str]
    ip_handling: str
    bot_handling: str
    is_enabled: bool


async def session_info(request: Request) -> Response:
    reader = await require_reader(request)
    return _ok(
        SessionInfo(
            admin=reader.is_admin,
            product_id=reader.token.product_id,
            token_name=reader.token.name,
            csrf=reader.session.csrf if reader.session is not None else None,
        )
    )


async def products(request: Request) -> Response:
    reader = await require_reader(request)
    found = await asyncio.to_thread(read, request.state.engine, list_products)
    return _ok(
        [
            ProductSummary(
                id=p.id,
                name=p.name,
                write_keys=list(p.write_keys),
                allowed_origins=list(p.allowed_origins),
                ip_handling=p.ip_handling.value,
                bot_handling=p.bot_handling.value,
                is_enabled=p.is_enabled,
            )
            for p in found
            if reader.may_read(p.id)
        ]
    )


# -- events ----------------------------------------------------------------------------


async def events(request: Request) -> Response:
    reader = await require_reader(request)
    query = event_query(request, reader)
    limit = _limit(request)
    cursor = request.query_params.get("cursor") or None
    try:
        page = await asyncio.to_thread(
            read,
            request.state.engine,
            lambda conn: list_events(conn, query, limit=limit, cursor=cursor),
        )
    except BadCursor as exc:
        raise _bad("cursor", str(exc)) from None
    return _ok(page)


async def event(request: Request) -> Response:
    reader = await require_reader(request)
    event_id = _text(request.path_params["id"], "id")
    found = await asyncio.to_thread(read, request.state.engine, lambda c: get_event(c, event_id))
    if found is None or not reader.may_read(found.event.product_id):
        raise NotFound("no such event")
    return _ok(found)


async def export(request: Request) -> Response:
    reader = await require_reader(request)
    query = event_query(request, reader)
    format = request.query_params.get("format", "ndjson")
    if format not in FORMATS:
        raise _bad("format", f"one of {', '.join(FORMATS)}")
    engine = request.state.engine

    def body() -> Iterator[bytes]:  # each next() runs in a thread (StreamingResponse)
        yield from chunks(iter_events(engine, query), format)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        body(),
        media_type=MEDIA[format],
        headers={
            "Content-Disposition": f'attachment; filename="events-{stamp}.{format}"',
            "Cache-Control": "no-store",
        },
    )


# -- users and accounts ----------------------------------------------------------------


def _one_product(request: Request, reader: Reader) -> str:
    product = reader.product(request.query_params.get("product") or None)
    if product is None:
        raise _bad("product", "required with an admin token")
    return product


async def user(request: Request) -> Response:
    reader = await require_reader(request)
    product = _one_product(request, reader)
    wanted = _text(request.path_params["id"], "id")
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: user_profile(conn, product, wanted)
    )
    if found is None:
        raise NotFound("no such user")
    return _ok(found)


async def account(request: Request) -> Response:
    reader = await require_reader(request)
    product = _one_product(request, reader)
    wanted = _text(request.path_params["id"], "id")
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: account_profile(conn, product, wanted)
    )
    if found is None:
        raise NotFound("no such account")
    return _ok(found)


def _listing(page_of: Callable[..., Any]) -> Handler:
    """A list of users or accounts: ``q`` (an id prefix), ``limit``, ``cursor``."""

    async def listing(request: Request) -> Response:
        reader = await require_reader(request)
        product = _one_product(request, reader)
        search = _text(request.query_params.get("q", ""), "q") or None
        limit, cursor = _limit(request), request.query_params.get("cursor") or None
        try:
            page = await asyncio.to_thread(
                read,
                request.state.engine,
                lambda conn: page_of(conn, product, search=search, limit=limit, cursor=cursor),
            )
        except BadCursor as exc:
            raise _bad("cursor", str(exc)) from None
        return _ok(page)

    return listing


users_list = _listing(user_page)
accounts_list = _listing(account_page)


class ProductKeys(msgspec.Struct, kw_only=True):
    id: str
    write_keys: list[str]
    server_keys: list[str]
    """Secret: shown to an admin on demand, never in lists."""


async def product_keys(request: Request) -> Response:
    await require_reader(request, admin=True)
    wanted = _text(request.path_params["id"], "id")
    found = await asyncio.to_thread(read, request.state.engine, list_products)
    product = next((p for p in found if p.id == wanted), None)
    if product is None:
        raise NotFound("no such product")
    return _ok(
        ProductKeys(
            id=product.id,
            write_keys=list(product.write_keys),
            server_keys=list(product.server_keys),
        )
    )


# -- dead letters ----------------------------------------------------------------------


class Replayed(msgspec.Struct, kw_only=True):
    replayed: int
    """Dead letters enqueued again (the worker stores them, or dead-letters them anew)."""
    ids: list[int]


async def dead_letters(request: Request) -> Response:
    reader = await require_reader(request)
    product = reader.product(request.query_params.get("product") or None)
    include = _flag(request, "all")
    limit = _limit(request)
    cursor = request.query_params.get("cursor") or None
    try:
        page = await asyncio.to_thread(
            read,
            request.state.engine,
            lambda conn: dead_letter_page(
                conn, product_id=product, include_replayed=include, limit=limit, cursor=cursor
            ),
        )
    except BadCursor as exc:
        raise _bad("cursor", str(exc)) from None
    return _ok(page)


async def _replay(request: Request, letters: list[DeadLetterRecord]) -> Response:
    """Enqueue the letters' envelopes as ordinary jobs (as the collector does for new
    events), then mark them replayed; the worker's dedup makes a replay idempotent."""
    state = request.state
    for start in range(0, len(letters), REPLAY_JOB_SIZE):
        part = letters[start : start + REPLAY_JOB_SIZE]
        await write_async(state.redis, state.jobs.commands([letter.envelope for letter in part]))
        ids = [letter.id for letter in part]
        await asyncio.to_thread(
            write, state.engine, lambda conn, ids=ids: mark_replayed(conn, ids, datetime.now(UTC))
        )
    return _ok(Replayed(replayed=len(letters), ids=[letter.id for letter in letters]), 202)


async def replay_one(request: Request) -> Response:
    await require_reader(request, admin=True)
    raw = request.path_params["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound("no such dead letter")
    letter_id = int(raw)
    found = await asyncio.to_thread(
        read, request.state.engine, lambda conn: get_dead_letter(conn, letter_id)
    )
    if found is None:
        raise NotFound("no such dead letter")
    return await _replay(request, [found])


async def replay_all(request: Request) -> Response:
    await require_reader(request, admin=True)
    found = await asyncio.to_thread(read, request.state.engine, dead_letters_to_replay)
    return await _replay(request, found)


# -- live ------------------------------------------------------------------------------


async def live(request: Request) -> Response:
    reader = await require_reader(request)
    product = reader.product(request.query_params.get("product") or None)
    types = frozenset(_many(request, "type"))
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    hub: LiveHub = request.state.live
    subscriber = await hub.subscribe(product, types)
    return LiveResponse(hub, subscriber, hub.stream(request.state.redis, subscriber, last))


# -- declarations ----------------------------------------------------------------------


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", **schema},
        "description": description,
    }


PRODUCT = _query("product", "A product id (a read key reads its own product by default)")
LIMIT = _query("limit", f"Page size, 1 to {MAX_LIMIT} (default 50)", pattern="^[0-9]{1,3}$")
CURSOR = _query("cursor", "The next_cursor of the previous page")
SEARCH = _query("q", "A prefix to search for")
EVENT_FILTERS = (
    PRODUCT,
    _query("type", "Event types, comma-separated or repeated (track, page, identify ...)"),
    _query("name", "An event name (repeat the parameter for several)"),
    _query("from", "Events at or after this ISO 8601 time", format="date-time"),
    _query("to", "Events before this ISO 8601 time", format="date-time"),
    _query("user", "A user id or any of its aliases (anonymous ids): the person's events"),
    _query("account", "An account id: its events and its sub-accounts'"),
    _query("exclude_bots", "true: leave out events flagged as bots", enum=["true", "false"]),
    {
        "name": "property",
        "in": "query",
        "required": False,
        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
        "style": "form",
        "explode": True,
        "description": "property.<key>[.<key>...]=<value>: the JSON value at that path in "
        "properties equals value (as text: numbers as written, true/false)",
    },
)
ID = ({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},)
READ_SCHEMES = ("bearerAuth", "sessionCookie")
ERRORS: dict[int, Schema] = {**READ_ERRORS}


def _endpoint(
    path: str,
    methods: tuple[str, ...],
    handler: Any,
    name: str,
    summary: str,
    responses: dict[int, Schema],
    **extra: Any,
) -> Endpoint:
    return Endpoint(
        PREFIX + path,
        methods,
        handler,
        f"api.{name}",
        summary,
        schemes=READ_SCHEMES,
        reads=True,
        responses={**responses, **ERRORS},
        **extra,
    )


ENDPOINTS = (
    _endpoint(
        "/session",
        ("GET",),
        session_info,
        "session",
        "Who is reading: admin or one product, and the CSRF value of a dashboard session",
        {200: SessionInfo},
    ),
    _endpoint(
        "/products",
        ("GET",),
        products,
        "products",
        "The products this credential reads",
        {200: list[ProductSummary]},
    ),
    _endpoint(
        "/products/{id}/keys",
        ("GET",),
        product_keys,
        "product_keys",
        "A product's keys, the secret server key included (admin)",
        {200: ProductKeys},
        parameters=ID,
    ),
    _endpoint(
        "/events/export",
        ("GET",),
        export,
        "export",
        "Every matching event, streamed as NDJSON or CSV (newest first)",
        {200: None},
        parameters=(
            *EVENT_FILTERS,
            _query("format", "ndjson (default) or csv", enum=list(FORMATS)),
        ),
        media_by_status={200: (MEDIA["ndjson"], "text/csv")},
    ),
    _endpoint(
        "/events",
        ("GET",),
        events,
        "events",
        "Stored events, newest first, filtered, one page at a time",
        {200: EventPage},
        parameters=(*EVENT_FILTERS, LIMIT, CURSOR),
    ),
    _endpoint(
        "/events/{id}",
        ("GET",),
        event,
        "event",
        "One stored event with its enrichment",
        {200: EventDetail},
        parameters=ID,
    ),
    _endpoint(
        "/users",
        ("GET",),
        users_list,
        "users",
        "A product's users, newest first (q: a prefix of the id or email)",
        {200: UserPage},
        parameters=(PRODUCT, SEARCH, LIMIT, CURSOR),
    ),
    _endpoint(
        "/accounts",
        ("GET",),
        accounts_list,
        "accounts",
        "A product's accounts, newest first (q: a prefix of the id or name)",
        {200: AccountPage},
        parameters=(PRODUCT, SEARCH, LIMIT, CURSOR),
    ),
    _endpoint(
        "/users/{id}",
        ("GET",),
        user,
        "user",
        "A user (by id or alias): profile, traits, aliases, accounts, newest events",
        {200: UserProfile},
        parameters=(*ID, PRODUCT),
    ),
    _endpoint(
        "/accounts/{id}",
        ("GET",),
        account,
        "account",
        "An account: traits, parents, sub-accounts, users, newest events",
        {200: AccountProfile},
        parameters=(*ID, PRODUCT),
    ),
    _endpoint(
        "/deadletters",
        ("GET",),
        dead_letters,
        "dead_letters",
        "Dead letters (what could not be stored, and why), newest first",
        {200: DeadLetterPage},
        parameters=(
            PRODUCT,
            _query("all", "true: include replayed ones", enum=["true", "false"]),
            LIMIT,
            CURSOR,
        ),
    ),
    _endpoint(
        "/deadletters/replay",
        ("POST",),
        replay_all,
        "replay_all",
        "Replay every dead letter not yet replayed (admin)",
        {202: Replayed},
    ),
    _endpoint(
        "/deadletters/{id}/replay",
        ("POST",),
        replay_one,
        "replay_one",
        "Replay one dead letter (admin)",
        {202: Replayed},
        parameters=ID,
    ),
    _endpoint(
        "/live",
        ("GET",),
        live,
        "live",
        "Events as they are stored, as Server-Sent Events (Last-Event-ID resumes)",
        {200: None},
        parameters=(
            PRODUCT,
            _query("type", "Event types, comma-separated or repeated"),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                "description": "Resume after this event (the SSE id): exactly what was missed",
            },
        ),
        media="text/event-stream",
    ),
)
