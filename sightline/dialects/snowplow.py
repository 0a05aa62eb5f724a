"""The Snowplow dialect: the tracker protocol (``collector.endpoints.snowplow``).

Snowplow trackers send events as maps of short text fields: POSTed as a
self-describing ``payload_data`` document (``{"schema": "iglu:...payload_data/
jsonschema/1-0-4", "data": [{...}, ...]}``) to ``/com.snowplowanalytics.snowplow/tp2``,
or one event in the query string of ``GET /i`` (``/ice.png``). Each event becomes one
canonical event:

- ``e=pv`` a page view (``page_view``); ``e=pp`` a page ping, an ``engagement`` event
  ``page_ping`` with ``pp_mix``/``pp_max``/``pp_miy``/``pp_may`` as properties;
  ``e=se`` a structured event named by ``se_ac`` with ``category`` (``se_ca``),
  ``action``, ``label`` (``se_la``), ``property`` (``se_pr``), ``value`` (``se_va``);
  ``e=ue`` a self-describing event (``ue_pr`` JSON, ``ue_px`` base64url) named by its
  schema's name (``iglu:com.acme/link_click/jsonschema/1-0-0`` -> ``link_click``), its
  data the properties (a ``screen_view`` is a ``screen``); ``e=tr``/``e=ti`` the
  legacy e-commerce ``transaction`` / ``transaction_item``, ``tr_*``/``ti_*`` unprefixed.
- ``uid`` the user id; ``duid`` (else the network user id ``tnuid``/``nuid``) the
  anonymous id, linked to ``uid`` when both come; ``sid`` the session id (``vid``, the
  visit count, is ``context.snowplow.session_index``); ``eid`` the message id (dedup).
- ``ttm`` (true timestamp) is the event's time as given; otherwise ``dtm`` (device
  created) is the timestamp and ``stm`` (device sent) the sent time, so the worker's
  clock correction gives Snowplow's derived timestamp: received - (stm - dtm).
- context: ``url``/``page``/``refr`` -> ``context.page`` (url, path, search, title,
  referrer; the ``web_page`` context's id as ``page.id``), ``res`` -> ``screen``,
  ``lang`` -> ``locale``, ``tz`` -> ``timezone``, ``ua``/``ip`` override the request's,
  ``tv``/``tna`` -> ``library``; every context (``co``/``cx``) is kept in
  ``context.snowplow_contexts``; ``p``, ``aid`` and the rest in ``context.snowplow``.

An envelope of kind ``event+anonymous`` came with ``SP-Anonymous``: no address and no
network user id are kept (the collector stored no address in the envelope either).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from sightline.dialects.base import Dialect, client_context, new_event
from sightline.dialects.fields import MAX_ID, MAX_NAME
from sightline.dialects.snowplow_protocol import (
    ANONYMOUS_EVENT,
    EVENT,
    EVENT_TYPES,
    FIXED_NAMES,
    MAX_BODY_BYTES,
    NAME,
    PING_FIELDS,
    REJECTED,
    STRUCT_FIELDS,
    Parsed,
    PayloadData,
    SelfDescribing,
    as_text,
    parse_event,
    schema_name,
    validate_payload,
)
from sightline.envelope import Envelope
from sightline.errors import InvalidInput
from sightline.model import AliasChange, EventType, Normalised

__all__ = [
    "ANONYMOUS_EVENT",
    "DIALECT",
    "EVENT",
    "MAX_BODY_BYTES",
    "NAME",
    "REJECTED",
    "PayloadData",
    "as_text",
    "normalise",
    "parse_event",
    "validate_payload",
]


def normalise(envelope: Envelope) -> Normalised:
    if envelope.kind == REJECTED:
        raise ValueError(_refusal(envelope.body))
    if envelope.kind not in (EVENT, ANONYMOUS_EVENT) or not isinstance(envelope.body, dict):
        raise ValueError(f"a Snowplow envelope holds one event, not {envelope.kind!r}")
    try:
        parsed = parse_event(as_text(envelope.body))
    except InvalidInput as exc:  # an envelope this collector did not validate (a replay)
        raise ValueError(_reasons([msgspec.structs.asdict(e) for e in exc.errors])) from None
    f = parsed.fields
    anonymous = envelope.kind == ANONYMOUS_EVENT
    if anonymous:  # SP-Anonymous: no address, no network user id
        f = {k: v for k, v in f.items() if k not in ("ip", "nuid", "tnuid")}
    name, event_type, properties = _what(parsed, f)
    user_id = f.get("uid") or None
    anonymous_id = f.get("duid") or f.get("tnuid") or f.get("nuid") or None
    times = parsed.times
    event = new_event(
        envelope,
        message_id=f.get("eid") or None,
        name=name,
        type=event_type,
        timestamp=times.get("ttm") or times.get("dtm"),
        sent_at=None if "ttm" in times else times.get("stm"),
        user_id=user_id,
        anonymous_id=anonymous_id,
        session_id=(f.get("sid") or _session_of(parsed.contexts) or None),
        properties=properties,
        context=_context(parsed, f, envelope, anonymous),
    )
    aliases: tuple[AliasChange, ...] = ()
    if user_id is not None and anonymous_id is not None:
        aliases = (AliasChange(alias=anonymous_id, user_external_id=user_id, kind="anonymous"),)
    return Normalised(events=(event,), aliases=aliases)


def _what(parsed: Parsed, f: dict[str, str]) -> tuple[str, EventType, dict[str, Any]]:
    """The event's name, type and properties."""
    kind = f["e"]
    properties: dict[str, Any] = {}
    if kind == "pp":
        # The browser tracker leaves out an offset of 0.
        properties = {k: parsed.numbers.get(k, 0) for k in PING_FIELDS}
    elif kind == "se":
        properties = {v: f[k] for k, v in STRUCT_FIELDS.items() if f.get(k)}
        if "se_va" in parsed.numbers:
            properties["value"] = parsed.numbers["se_va"]
        return f["se_ac"], EventType.TRACK, properties
    elif kind == "ue" and parsed.unstruct is not None:
        name = schema_name(parsed.unstruct.schema)
        properties = dict(parsed.unstruct.data)
        screen = properties.get("name")
        if name == "screen_view" and isinstance(screen, str) and 0 < len(screen) <= MAX_NAME:
            return screen, EventType.SCREEN, properties
        return name, EventType.TRACK, properties
    elif kind in ("tr", "ti"):
        properties = {k[3:]: v for k, v in f.items() if k.startswith(kind + "_")}
    return FIXED_NAMES.get(kind, kind), EVENT_TYPES[kind], properties


def _context(
    parsed: Parsed, f: dict[str, str], envelope: Envelope, anonymous: bool
) -> dict[str, Any]:
    context = client_context(
        f.get("ip") or None,
        f.get("ua") or None,
        None if anonymous else envelope.ip,
        envelope.user_agent,
    )
    page = _page(f)
    web_page = _first(parsed.contexts, "web_page")
    if web_page is not None and isinstance(web_page.get("id"), str):
        page["id"] = web_page["id"]
    if page:
        context["page"] = page
    if f.get("tv") or f.get("tna"):
        context["library"] = {"name": "snowplow", "version": f.get("tv"), "namespace": f.get("tna")}
    screen = _dimensions(f.get("res"))
    if screen:
        context["screen"] = screen
    if f.get("lang"):
        context["locale"] = f["lang"]
    if f.get("tz"):
        context["timezone"] = f["tz"]
    if parsed.contexts:
        context["snowplow_contexts"] = [msgspec.structs.asdict(c) for c in parsed.contexts]
    extra = {
        "event": f["e"],
        "app_id": f.get("aid"),
        "platform": f.get("p"),
        "schema": parsed.unstruct.schema if parsed.unstruct is not None else None,
        "session_index": int(f["vid"]) if f.get("vid", "").isdigit() else None,
        "network_userid": None if anonymous else (f.get("tnuid") or f.get("nuid")),
        "viewport": _dimensions(f.get("vp")),
        "anonymous": anonymous or None,
    }
    context["snowplow"] = {k: v for k, v in extra.items() if v}
    return context


def _page(f: dict[str, str]) -> dict[str, Any]:
    page: dict[str, Any] = {}
    if f.get("url"):
        parts = urlsplit(f["url"])
        page.update(
            url=f["url"], path=parts.path or "/", search=f"?{parts.query}" if parts.query else ""
        )
    if f.get("page"):
        page["title"] = f["page"]
    if f.get("refr"):
        page["referrer"] = f["refr"]
    return page


def _dimensions(text: str | None) -> dict[str, int] | None:
    width, _, height = (text or "").partition("x")
    if not (width.isdigit() and height.isdigit()):
        return None
    return {"width": int(width), "height": int(height)}


def _first(contexts: list[SelfDescribing], name: str) -> dict[str, Any] | None:
    return next((c.data for c in contexts if schema_name(c.schema) == name), None)


def _session_of(contexts: list[SelfDescribing]) -> str | None:
    session = _first(contexts, "client_session")
    value = session.get("sessionId") if session is not None else None
    return value if isinstance(value, str) and len(value) <= MAX_ID else None


def _reasons(errors: Any) -> str:
    return "; ".join(
        f"{e.get('field')}: {e.get('reason')}" if isinstance(e, dict) else str(e) for e in errors
    )


def _refusal(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return "a rejected event without its reasons"
    return f"refused by the collector: {_reasons(errors)}"


DIALECT = Dialect(NAME, "Snowplow tracker protocol", normalise)
