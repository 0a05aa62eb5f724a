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
- ``c_n`` (``c_p``, ``c_t``, ``c_i``): ``Content Impression`` / ``Content Interaction``;
- ``ec_id`` (``revenue``, ``ec_st``, ``ec_tx``, ``ec_sh``, ``ec_dt``, ``ec_items``):
  ``Order Completed``; ``idgoal=0`` without it: ``Cart Updated``;
- ``idgoal``: ``track`` ``Goal`` (``goal_id``, ``revenue``);
- anything else: a page view named by ``action_name`` (else ``page_view``).

Every event gets ``context.page`` from ``url`` / ``urlref`` / ``action_name``, the screen
from ``res``, ``context.locale`` from ``lang``, the user agent from ``ua`` (else the
request's), ``cid`` (else ``_id``) as anonymous id, ``uid`` as user id (the anonymous
id aliased to it), ``pv_id``, ``gt_ms``, ``dimensionN`` and custom variables (``_cvar``,
``cvar``) as properties.

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
from typing import Any
from urllib.parse import urlsplit

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.decoding import depth_error
from sightline.dialects.dedup import content_id
from sightline.dialects.matomo_wire import Params, number, parse_time
from sightline.envelope import Envelope
from sightline.model import AliasChange, EventType, Normalised

NAME = "matomo"
KIND = "request"
_MONEY = {"subtotal": "st", "tax": "tx", "shipping": "sh", "discount": "dt"}
_RESOLUTION = re.compile(r"^(\d{1,6})x(\d{1,6})$")

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
    if p.get("gt_ms") and number(p["gt_ms"]) is not None:
        properties["gt_ms"] = number(p["gt_ms"])  # the page's generation time
    user_id, anonymous_id = p.get("uid") or None, p.get("cid") or p.get("_id") or None
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
            properties["value"] = number(p["e_v"])
        return EventType.TRACK, p.get("e_a") or "event", properties
    if p.get("c_n"):  # content tracking: an interaction, else an impression
        content = {"name": p["c_n"], "piece": p.get("c_p"), "target": p.get("c_t")}
        if p.get("c_i"):
            return (
                EventType.TRACK,
                "Content Interaction",
                _given(content | {"interaction": p["c_i"]}),
            )
        return EventType.TRACK, "Content Impression", _given(content)
    if p.get("ec_id") or p.get("idgoal") == "0":  # an ecommerce order, else a cart update
        money = {k: number(p.get(f"ec_{v}", "")) for k, v in _MONEY.items()}
        order: dict[str, Any] = {
            "order_id": p.get("ec_id"),
            "revenue": number(p.get("revenue", "")),
        }
        order |= money
        order["items"] = _items(p.get("ec_items"))
        return (
            EventType.TRACK,
            "Order Completed" if p.get("ec_id") else "Cart Updated",
            _given(order),
        )
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
        if p.get("revenue") and number(p["revenue"]) is not None:
            goal["revenue"] = number(p["revenue"])
        return EventType.TRACK, "Goal", goal
    return EventType.PAGE, p.get("action_name") or "page_view", {}


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _json(text: str | None) -> Any:
    """A JSON parameter (``ec_items``, ``_cvar``), or ``None`` when it is none."""
    if not text or depth_error(text.encode()) is not None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def _items(text: str | None) -> list[dict[str, Any]] | None:
    """``ec_items``: ``[[sku, name, category, price, quantity], ...]``."""
    rows = _json(text)
    if not isinstance(rows, list):
        return None
    fields = ("sku", "name", "category", "price", "quantity")
    return [dict(zip(fields, row, strict=False)) for row in rows if isinstance(row, list)]


def _custom_variables(p: Params) -> dict[str, Any]:
    """``_cvar`` (visit) and ``cvar`` (page): ``{"1": ["name", "value"], ...}`` (or name: value)."""
    found: dict[str, Any] = {}
    for text in (p.get("_cvar"), p.get("cvar")):
        slots = _json(text)
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
