"""The Matomo dialect: the Tracking HTTP API (developer.matomo.org/api-reference/tracking-api).

One tracking request is a set of query parameters, sent as ``GET /matomo.php?...``, as a
form-encoded ``POST`` body, or as one string of a bulk ``POST`` body
``{"requests": ["?idsite=1&rec=1&...", ...], "token_auth"?: "..."}`` (a request may also
be an object of parameters, as Matomo accepts). The collector checks each request here
and enqueues its parameters, one envelope per request (kind ``request``); the worker maps
them to one canonical event:

- ``ping=1``: an ``engagement`` event (Matomo's heartbeat);
- ``e_c`` / ``e_a`` (``e_n``, ``e_v``): a ``track`` event named by its action, with
  ``category``, ``action``, ``name``, ``value`` as properties;
- ``link`` / ``download``: ``track`` events ``Outlink`` / ``Download`` (``url``);
- ``search`` (``search_cat``, ``search_count``): ``track`` ``Site Search``;
- ``idgoal``: ``track`` ``Goal`` (``goal_id``, ``revenue``);
- anything else: a page view named by ``action_name`` (else ``page_view``).

Every event gets ``context.page`` from ``url`` / ``urlref`` / ``action_name``, the screen
from ``res``, ``context.locale`` from ``lang``, the user agent from ``ua`` (else the
request's), ``_id`` as anonymous id, ``uid`` as user id (with ``_id`` aliased to it),
``pv_id``, ``gt_ms``, ``dimensionN`` and custom variables (``_cvar``, ``cvar``) as properties.

Decisions where Matomo's page is silent or Matomo itself is lenient:

- ``rec`` other than ``1``: nothing is tracked, the answer is the ordinary one (as for
  requests Matomo excludes); a bulk answer counts it neither tracked nor invalid.
- ``token_auth`` authenticates when it is the site's product's **server key**. Like
  Matomo, ``cdt`` older than 24 hours needs it (else 400); a ``cdt`` in the future or
  older than 20 years is ignored (Matomo ignores it too). ``cip`` is used only when
  authenticated and dropped otherwise (Matomo refuses the request; dropping keeps the
  event). ``token_auth`` itself is never stored.
- ``cdt`` is the event time (unix seconds or a UTC date-time); no send time, no skew.
- Matomo has no message id: the idempotency key is derived from the site, visitor, page
  view id, the event's fields and ``rand`` (``sightline.dialects.dedup``), so a retried
  request is stored once; without ``rand`` or ``cdt`` the key holds for a minute.
- Input Matomo would coerce is a 400 naming the field: an event without category or
  action, an ``e_v`` / ``cdt`` that is no number or time, ids over 255, values over 16 KB.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.decoding import decode, depth_error
from sightline.dialects.dedup import content_id
from sightline.dialects.fields import MAX_ID
from sightline.envelope import Envelope
from sightline.errors import FieldError, InvalidInput
from sightline.model import AliasChange, EventType, Normalised

NAME = "matomo"
KIND = "request"
MAX_BODY_BYTES = 512 * 1024
MAX_VALUE = 16 * 1024
RECENT = timedelta(hours=24)
"""Matomo's ``tracking_requests_require_authentication_when_custom_timestamp_newer_than``."""
OLDEST = timedelta(days=20 * 365)
SECRET_PARAMS = ("token_auth",)
ID_PARAMS = ("_id", "uid", "cid", "pv_id", "idsite")
EVENT_PARAMS = ("e_c", "e_a", "e_n", "e_v")
_RESOLUTION = re.compile(r"^(\d{1,6})x(\d{1,6})$")

Params = dict[str, str]
Scalar = str | int | float | bool | None


class BulkBody(msgspec.Struct, kw_only=True):
    """The bulk tracking body (other members, such as matomo.js's ``send_image``, ignored)."""

    requests: list[str | dict[str, Scalar]]
    token_auth: str | None = None


# -- reading requests (collector side) -------------------------------------------------


def is_bulk(raw: bytes, content_type: str | None) -> bool:
    """Whether a POST body is a bulk request: JSON (matomo.js sends it as form media)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or raw.lstrip().startswith(b"{")


def form(raw: bytes) -> Params:
    """A form-encoded body (or a query string) as parameters; a repeated name: the last."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "invalid tracking request", [FieldError("$", f"not valid UTF-8 (byte {exc.start})")]
        ) from None
    return dict(parse_qsl(text, keep_blank_values=True))


def decode_bulk(raw: bytes) -> BulkBody:
    return decode(raw, BulkBody, what="bulk tracking request")


def request_params(item: str | dict[str, Scalar]) -> Params:
    """One request of a bulk body: a query string (``?a=b&...``) or an object of parameters."""
    if isinstance(item, str):
        # "?idsite=1&..." or ".../matomo.php?idsite=1&...": the query; "idsite=1&...": itself
        before, mark, query = item.partition("?")
        return form((query if mark and "=" not in before else item).encode())
    return {k: _text(v) for k, v in item.items() if v is not None}


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def is_tracked(params: Params) -> bool:
    return params.get("rec", "").strip() == "1"


def validate(params: Params, *, now: datetime, authenticated: bool) -> Params:
    """The parameters to enqueue, or :class:`InvalidInput` naming every failing field.

    ``token_auth`` is removed, ``cip`` unless ``authenticated``, and a ``cdt`` Matomo
    would ignore (future, or older than 20 years).
    """
    errors = [
        FieldError(name, f"longer than {MAX_VALUE} characters")
        for name, value in params.items()
        if len(value) > MAX_VALUE
    ]
    errors += [
        FieldError(name, f"longer than {MAX_ID} characters")
        for name in ID_PARAMS
        if len(params.get(name, "")) > MAX_ID
    ]
    if any(params.get(name) for name in EVENT_PARAMS):
        errors += [
            FieldError(name, "an event needs a category (e_c) and an action (e_a)")
            for name in ("e_c", "e_a")
            if not params.get(name, "").strip()
        ]
    if params.get("e_v") and _number(params["e_v"]) is None:
        errors.append(FieldError("e_v", "must be a number"))
    checked = {k: v for k, v in params.items() if k not in SECRET_PARAMS}
    if not authenticated:
        checked.pop("cip", None)
    if params.get("cdt"):
        at = parse_time(params["cdt"])
        if at is None:
            errors.append(FieldError("cdt", "must be a unix timestamp or a date-time in UTC"))
        elif at > now or at < now - OLDEST:
            del checked["cdt"]  # Matomo ignores a timestamp it cannot believe
        elif at < now - RECENT and not authenticated:
            errors.append(
                FieldError("cdt", "older than 24 hours: needs token_auth (the server key)")
            )
    if errors:
        raise InvalidInput("invalid tracking request", errors)
    return checked


def parse_time(text: str) -> datetime | None:
    """``cdt``: unix seconds, or a date-time (``2024-01-20 12:00:00``, ISO 8601) in UTC."""
    seconds = _number(text)
    try:
        if seconds is not None:
            return datetime.fromtimestamp(seconds, UTC)
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


# -- mapping to the canonical model (worker side, pure) --------------------------------


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind != KIND or not isinstance(envelope.body, dict):
        raise ValueError(f"a matomo envelope holds one request's parameters, not {envelope.kind!r}")
    p: Params = {k: str(v) for k, v in envelope.body.items()}
    kind, name, properties = _action(p)
    properties |= {k: v for k, v in p.items() if k.startswith("dimension") and k[9:].isdigit()}
    properties |= _custom_variables(p)
    if p.get("pv_id"):
        properties["pv_id"] = p["pv_id"]
    if p.get("gt_ms") and _number(p["gt_ms"]) is not None:
        properties["gt_ms"] = _number(p["gt_ms"])  # the page's generation time
    user_id, anonymous_id = p.get("uid") or None, p.get("_id") or None
    at = parse_time(p["cdt"]) if p.get("cdt") else None
    parts = [p.get(k) for k in ("idsite", "_id", "uid", "pv_id", "url", "action_name")]
    parts += [kind.value, name, msgspec.json.encode(properties).decode(), p.get("rand")]
    event = new_event(
        envelope,
        message_id=content_id(envelope, [*parts, p.get("cdt")], unique=bool(p.get("rand") or at)),
        name=name,
        type=kind,
        timestamp=at,
        user_id=user_id,
        anonymous_id=anonymous_id,
        properties=properties,
        context=_context(p, envelope),
    )
    aliases: tuple[AliasChange, ...] = ()
    if user_id and anonymous_id:
        aliases = (AliasChange(alias=anonymous_id, user_external_id=user_id, kind="anonymous"),)
    return Normalised(events=(event,), aliases=aliases)


def _action(p: Params) -> tuple[EventType, str, dict[str, Any]]:
    """What the request records: its event type, name and properties."""
    if p.get("ping") == "1":
        return EventType.ENGAGEMENT, "engagement", {}
    if p.get("e_c") or p.get("e_a"):
        properties: dict[str, Any] = {"category": p.get("e_c", ""), "action": p.get("e_a", "")}
        if p.get("e_n"):
            properties["name"] = p["e_n"]
        if p.get("e_v"):
            properties["value"] = _number(p["e_v"])
        return EventType.TRACK, p.get("e_a") or "event", properties
    for param, event in (("link", "Outlink"), ("download", "Download")):
        if p.get(param):
            return EventType.TRACK, event, {"url": p[param]}
    if p.get("search"):
        found: dict[str, Any] = {"keyword": p["search"], "category": p.get("search_cat")}
        if p.get("search_count", "").isdigit():
            found["count"] = int(p["search_count"])
        return EventType.TRACK, "Site Search", {k: v for k, v in found.items() if v is not None}
    if p.get("idgoal"):
        goal: dict[str, Any] = {"goal_id": p["idgoal"]}
        if p.get("revenue") and _number(p["revenue"]) is not None:
            goal["revenue"] = _number(p["revenue"])
        return EventType.TRACK, "Goal", goal
    return EventType.PAGE, p.get("action_name") or "page_view", {}


def _custom_variables(p: Params) -> dict[str, Any]:
    """``_cvar`` (visit) and ``cvar`` (page): ``{"1": ["name", "value"], ...}`` (or name: value)."""
    found: dict[str, Any] = {}
    for text in (p.get("_cvar"), p.get("cvar")):
        if not text or depth_error(text.encode()) is not None:
            continue
        try:
            slots = msgspec.json.decode(text)
        except msgspec.DecodeError:
            continue
        for key, pair in slots.items() if isinstance(slots, dict) else ():
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str):
                found[pair[0]] = pair[1]
            elif not isinstance(pair, list | dict):  # {"name": value}, as some clients send
                found[key] = pair
    return found


def _context(p: Params, envelope: Envelope) -> dict[str, Any]:
    context = client_context(p.get("cip"), p.get("ua"), envelope.ip, envelope.user_agent)
    page = _page(p)
    if page:
        context["page"] = page
    size = _RESOLUTION.match(p.get("res", ""))
    if size:
        context["screen"] = {"width": int(size[1]), "height": int(size[2])}
    locale = p.get("lang", "").split(",", 1)[0].split(";", 1)[0].strip()
    if locale:
        context["locale"] = locale
    visitor = {k: p[k] for k in ("_idts", "_viewts", "_idvc", "new_visit") if p.get(k)}
    if visitor:
        context["matomo"] = visitor
    return context


def _page(p: Params) -> dict[str, Any]:
    """``context.page`` as Segment lays it out: url, path, search, title, referrer."""
    page: dict[str, Any] = {}
    url = p.get("url")
    if url:
        page["url"] = url
        parts = urlsplit(url)
        page["path"] = parts.path or "/"
        if parts.query:
            page["search"] = "?" + parts.query
    if p.get("action_name") and not (p.get("ping") or p.get("e_c") or p.get("e_a")):
        page["title"] = p["action_name"]
    if p.get("urlref"):
        page["referrer"] = p["urlref"]
    return page


DIALECT = Dialect(NAME, "Matomo", normalise)
