"""The OpenAPI 3.1 document of every endpoint, and a self-contained page that shows it.

Request and response schemas are generated from the same msgspec structs the
endpoints decode with (``msgspec.json.schema_components``), so the document
cannot drift from what is validated; this module only adds what a struct cannot
say: paths, methods, parameters, status codes and keys. The operation table is
checked against the route table by the test suite (every route is documented),
and a property-based run (schemathesis) sends generated requests to every
operation and checks that each answer is one the document allows.

``/docs`` is one static HTML page with a small inline script (no CDN: the
collector may run on a closed network) that renders ``/openapi.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from collector.dialects import das, fuzy, gameball, native, pyze
from collector.errors import FieldError
from sightline.store.lookups import AccountRecord, UserRecord
from sightline.store.products import Product

TITLE = "Sightline collector"
VERSION = "1"


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every client error outside the DAS dialect: what went wrong and which fields."""

    success: bool
    error: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


class NativeSuccess(msgspec.Struct, kw_only=True):
    success: bool


class Empty(msgspec.Struct):
    """An empty JSON object."""


class Health(msgspec.Struct, kw_only=True):
    status: str
    redis: str


Schema = Any
"""A Python type msgspec can describe, or ``None`` for a body that is not JSON."""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    route: str
    summary: str
    request: Schema = None
    responses: dict[int, Schema] = field(default_factory=dict)
    security: tuple[str, ...] = ()
    parameters: tuple[dict[str, Any], ...] = ()
    optional_auth: bool = False
    media: str = "application/json"
    description: str = ""
    media_by_status: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Statuses answered in other (or several) media than ``media``, for bodies without schema."""


def _for_methods(methods: tuple[str, ...], *args: Any, **kwargs: Any) -> tuple[Operation, ...]:
    """One operation per method, for endpoints that take PUT and POST alike."""
    return tuple(Operation(method, *args, **kwargs) for method in methods)


INGEST_ERRORS: dict[int, Schema] = {
    400: ErrorBody,
    401: ErrorBody,
    403: ErrorBody,
    413: ErrorBody,
    503: ErrorBody,
}
READ_ERRORS: dict[int, Schema] = {400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody}
DAS_ERRORS: dict[int, Schema] = {
    401: das.DasError,
    403: das.DasError,
    413: das.DasError,
    422: das.DasError,
    503: ErrorBody,
}
SERVER_KEY = ("bearerAuth", "apiKeyHeader")
ANY_KEY = ("basicAuth", "bearerAuth", "apiKeyHeader")


def _path_id(what: str) -> tuple[dict[str, Any], ...]:
    return (
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": what,
        },
    )


_PAGING = (
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
)


def _das_search(entity: str) -> tuple[dict[str, Any], ...]:
    def text(name: str, required: bool = True, description: str = "") -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": required,
            "schema": {"type": "string"},
            "description": description,
        }

    return (
        {
            "name": "recording_id",
            "in": "query",
            "required": True,
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
        },
        text("customer_id"),
        text("user_id"),
        text(f"{entity}_id"),
        {"name": "latest", "in": "query", "schema": {"type": "boolean"}},
        text("page", False, "Page number"),
        text("pageSize", False, "Page size"),
    )


def _native(kind: str, schema: Schema) -> Operation:
    return Operation(
        "post",
        f"/v1/{kind}",
        f"native.{kind}",
        f"Segment-style {kind} message",
        request=schema,
        responses={200: NativeSuccess, **INGEST_ERRORS},
        security=("basicAuth", "writeKeyHeader"),
        optional_auth=True,  # writeKey may travel in the body
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/health",
        "system.health",
        "Can this collector reach Redis",
        responses={200: Health, 503: Health},
    ),
    Operation(
        "get",
        "/metrics",
        "system.metrics",
        "Prometheus metrics",
        responses={200: None},
        media="text/plain",
    ),
    Operation(
        "get", "/openapi.json", "system.openapi", "This document", responses={200: dict[str, Any]}
    ),
    Operation(
        "get",
        "/docs",
        "system.docs",
        "This document as a web page",
        responses={200: None},
        media="text/html",
    ),
    Operation(
        "get",
        "/p.gif",
        "pixel.track_pixel",
        "Tracking pixel: always a 1x1 GIF (503 when the queue is away)",
        description=(
            "Records the event(s) of its query string and answers a 1x1 GIF, never cached, "
            "whatever it could use: what it cannot is counted (and dead-lettered when the key "
            "names a product). A batch in `d` is validated whole, like `/v1/batch`, and stored "
            "message by message. When the request has a `Referer` with an http(s) or extension "
            "origin, the product's allowed origins apply to it. 503 (`Retry-After: 1`) when the "
            "queue is away: a GIF, except for a request with `d`, which gets text and no image "
            "so that a script's `Image` fires `error` and retries."
        ),
        responses={200: None, 503: None},
        media_by_status={503: ("image/gif", "text/plain")},
        parameters=tuple(
            {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}
            for name, what in (
                ("k", "write key (optional when `d` carries `writeKey`)"),
                (
                    "d",
                    "JSON: one native message, or a whole `/v1/batch` body "
                    '(`{"writeKey", "sentAt", "batch": [...]}`); replaces the plain fields',
                ),
                ("t", "type (default page)"),
                ("e", "event name"),
                ("u", "url"),
                ("r", "referrer"),
                ("ti", "title"),
                ("a", "anonymousId"),
                ("uid", "userId"),
                ("m", "messageId"),
            )
        ),
        media="image/gif",
    ),
    Operation(
        "get",
        "/s.js",
        "snippet.serve_snippet",
        "The browser tracking snippet",
        responses={200: None, 304: None},
        media="application/javascript",
    ),
    Operation(
        "get",
        "/sightline-ext.js",
        "snippet.serve_extension_module",
        "The browser-extension module",
        responses={200: None, 304: None},
        media="application/javascript",
    ),
    _native("track", native.Track),
    _native("page", native.Page),
    _native("screen", native.Screen),
    _native("identify", native.Identify),
    _native("group", native.Group),
    _native("alias", native.Alias),
    _native("batch", native.BatchWire),
    # Fuzy
    Operation(
        "get",
        "/v3/product",
        "fuzy.list_products",
        "Fuzy: the key's product and the products it created",
        responses={200: list[Product], **READ_ERRORS},
        security=SERVER_KEY,
    ),
    Operation(
        "post",
        "/v3/product",
        "fuzy.create_product",
        "Fuzy: create a product (answers with its keys)",
        request=fuzy.FuzyProductCreate,
        responses={201: Product, **INGEST_ERRORS},
        security=SERVER_KEY,
    ),
    Operation(
        "put",
        "/v3/product/{id}",
        "fuzy.configure_product",
        "Fuzy: configure a product",
        request=fuzy.FuzyProductChange,
        responses={200: Product, 404: ErrorBody, **INGEST_ERRORS},
        security=SERVER_KEY,
        parameters=_path_id("product id"),
    ),
    *_for_methods(
        ("put", "post"),
        "/v3/event",
        "fuzy.track_event",
        "Fuzy: one event or a list",
        request=fuzy.FuzyEvent | list[fuzy.FuzyEvent],
        responses={202: fuzy.FuzyAccepted, **INGEST_ERRORS},
        security=SERVER_KEY,
    ),
    *_for_methods(
        ("put", "post"),
        "/v3/account",
        "fuzy.put_accounts",
        "Fuzy: create or update accounts",
        request=fuzy.FuzyAccount | list[fuzy.FuzyAccount],
        responses={202: fuzy.FuzyAccepted, **INGEST_ERRORS},
        security=SERVER_KEY,
    ),
    Operation(
        "get",
        "/v3/account",
        "fuzy.get_accounts",
        "Fuzy: stored accounts",
        responses={200: list[AccountRecord], **READ_ERRORS},
        security=SERVER_KEY,
        parameters=_PAGING,
    ),
    Operation(
        "get",
        "/v3/account/{id}",
        "fuzy.get_account",
        "Fuzy: one stored account",
        responses={200: AccountRecord, **READ_ERRORS},
        security=SERVER_KEY,
        parameters=_path_id("account id"),
    ),
    *_for_methods(
        ("put", "post"),
        "/v3/user",
        "fuzy.put_users",
        "Fuzy: create or update users",
        request=fuzy.FuzyUser | list[fuzy.FuzyUser],
        responses={202: fuzy.FuzyAccepted, **INGEST_ERRORS},
        security=SERVER_KEY,
    ),
    Operation(
        "get",
        "/v3/user",
        "fuzy.get_users",
        "Fuzy: stored users",
        responses={200: list[UserRecord], **READ_ERRORS},
        security=SERVER_KEY,
        parameters=_PAGING,
    ),
    Operation(
        "get",
        "/v3/user/{id}",
        "fuzy.get_user",
        "Fuzy: one stored user",
        responses={200: UserRecord, **READ_ERRORS},
        security=SERVER_KEY,
        parameters=_path_id("user id"),
    ),
    # Pyze
    Operation(
        "post",
        "/v1/events",
        "pyze.track_event",
        "Pyze: Enterprise Events API (appKey in the body)",
        request=pyze.PyzeEvent,
        responses={202: pyze.PyzeAccepted, **INGEST_ERRORS},
        security=SERVER_KEY,
        optional_auth=True,
    ),
    Operation(
        "post",
        "/users/profile",
        "pyze.upload_profiles",
        "Pyze: User Profiles API",
        request=pyze.ProfileUpload,
        responses={202: pyze.PyzeAccepted, **INGEST_ERRORS},
        security=ANY_KEY,
    ),
    Operation(
        "get",
        "/users/profile/{id}",
        "pyze.read_profile",
        "Pyze: a merged user profile",
        responses={200: dict[str, Any], **READ_ERRORS},
        security=ANY_KEY,
        parameters=_path_id("userId, customer_id, pyze_id or a user_alias id"),
    ),
    # Data Analytics Service
    Operation(
        "post",
        "/api/v1/analytics_events",
        "das.create_analytics_event",
        "DAS: create an analytics event",
        request=das.DasAnalyticsEvent,
        responses={201: das.AnalyticsEventRecord, **DAS_ERRORS},
        security=ANY_KEY,
    ),
    Operation(
        "post",
        "/api/v1/lead_analytics",
        "das.create_lead_event",
        "DAS: create a lead (or browser extension) analytics event",
        request=das.DasLeadEvent,
        responses={201: das.LeadRecord, **DAS_ERRORS},
        security=ANY_KEY,
    ),
    Operation(
        "get",
        "/api/v1/lead_analytics/search",
        "das.search_lead_events",
        "DAS: search lead analytics events",
        responses={200: das.SearchResult, **DAS_ERRORS},
        security=ANY_KEY,
        parameters=_das_search("lead"),
    ),
    Operation(
        "post",
        "/api/v1/contact_analytics",
        "das.create_contact_event",
        "DAS: create a contact analytics event",
        request=das.DasContactEvent,
        responses={201: das.ContactRecord, **DAS_ERRORS},
        security=ANY_KEY,
    ),
    Operation(
        "get",
        "/api/v1/contact_analytics/search",
        "das.search_contact_events",
        "DAS: search contact analytics events",
        responses={200: das.SearchResult, **DAS_ERRORS},
        security=ANY_KEY,
        parameters=_das_search("contact"),
    ),
    # Gameball
    Operation(
        "post",
        "/integrations/event",
        "gameball.track_event",
        "Gameball: track a player's events",
        request=gameball.GameballEventCall,
        responses={200: Empty, **INGEST_ERRORS},
        security=("gameballKey",),
    ),
)

SECURITY_SCHEMES = {
    "basicAuth": {"type": "http", "scheme": "basic", "description": "The key as the user name"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A server key"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
    "gameballKey": {"type": "apiKey", "in": "header", "name": "APIKey"},
}


def _content(op: Operation, status: int, schema: dict[str, Any] | None) -> dict[str, Any]:
    """A response's ``content``: JSON where there is a schema, else the operation's media."""
    if status == 304:
        return {}
    if schema is not None:
        return {"content": {"application/json": {"schema": schema}}}
    return {"content": {media: {} for media in op.media_by_status.get(status, (op.media,))}}


@cache
def build_document() -> dict[str, Any]:
    """The whole document; built once per process (it depends on code only)."""
    types: list[Any] = []
    for op in OPERATIONS:
        if op.request is not None:
            types.append(op.request)
        types.extend(t for t in op.responses.values() if t is not None)
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(
        unique, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(unique, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "operationId": f"{op.route}.{op.method}",
            "summary": op.summary,
            "tags": [op.route.split(".", 1)[0]],
            "responses": {
                str(status): {
                    "description": _DESCRIPTIONS.get(status, "Response"),
                    **_content(op, status, schema_of[t] if t is not None else None),
                }
                for status, t in op.responses.items()
            },
        }
        if op.description:
            entry["description"] = op.description
        if op.parameters:
            entry["parameters"] = list(op.parameters)
        if op.request is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[op.request]}},
            }
        if op.security:
            entry["security"] = [{name: []} for name in op.security] + (
                [{}] if op.optional_auth else []
            )
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Wire-compatible endpoints of Segment, Fuzy, Pyze, the Data "
            "Analytics Service and Gameball, all stored in one canonical model.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


_DESCRIPTIONS = {
    200: "OK",
    304: "Not modified",
    201: "Created",
    202: "Accepted for processing",
    400: "Invalid input: the failing fields and why",
    401: "No key, or an unknown key",
    403: "The key may not do this",
    404: "Not found",
    413: "Body too large",
    422: "Invalid input: a list of field errors",
    503: "The event queue is unavailable: retry later",
}


async def openapi_document(request: Request) -> Response:
    return Response(msgspec.json.encode(build_document()), media_type="application/json")


async def docs_page(request: Request) -> Response:
    return HTMLResponse(DOCS_HTML)


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sightline collector API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
details{border:1px solid #ddd;border-radius:4px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}code,pre{font:13px ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:30rem}
.m{display:inline-block;min-width:3.5rem;font-weight:bold;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put{color:#c60}.s{color:#666}
</style></head><body>
<h1>Sightline collector API</h1>
<p>Every endpoint this collector serves, from <a href="/openapi.json">/openapi.json</a>
(OpenAPI 3.1). Schemas are shown with their references resolved once.</p>
<div id="ops">Loading&hellip;</div>
<script>
"use strict";
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
}
function resolve(schema, doc, depth) {
  if (!schema || typeof schema !== "object" || depth > 6) return schema;
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve(doc.components.schemas[name], doc, depth + 1);
  }
  const out = Array.isArray(schema) ? [] : {};
  for (const [k, v] of Object.entries(schema)) out[k] = resolve(v, doc, depth + 1);
  return out;
}
function block(title, schema, doc) {
  return el("details", {}, el("summary", {}, title),
    el("pre", {}, JSON.stringify(resolve(schema, doc, 0), null, 2)));
}
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const root = document.getElementById("ops");
  root.textContent = "";
  const byTag = {};
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      (byTag[op.tags[0]] = byTag[op.tags[0]] || []).push([path, method, op]);
    }
  }
  for (const [tag, ops] of Object.entries(byTag)) {
    root.append(el("h2", {}, tag));
    for (const [path, method, op] of ops) {
      const d = el("details", {}, el("summary", {},
        el("span", {class: "m " + method}, method), " ", el("code", {}, path),
        " ", el("span", {class: "s"}, op.summary || "")));
      const keys = (op.security || []).map(s => Object.keys(s)[0] || "(none)");
      if (keys.length) d.append(el("p", {}, "Keys: " + keys.join(", ")));
      if (op.parameters) d.append(block("Parameters", op.parameters, doc));
      if (op.requestBody) {
        d.append(block("Request body", op.requestBody.content["application/json"].schema, doc));
      }
      for (const [status, resp] of Object.entries(op.responses)) {
        const media = Object.values(resp.content || {})[0] || {};
        d.append(block(status + " " + resp.description, media.schema || {}, doc));
      }
      root.append(d);
    }
  }
}).catch(err => { document.getElementById("ops").textContent = "Could not load: " + err; });
</script>
</body></html>
"""
