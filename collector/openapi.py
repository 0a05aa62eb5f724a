"""The OpenAPI 3.1 document, generated from the endpoint declarations.

Paths, methods, keys, parameters and statuses come from the same
:class:`~collector.routing.Endpoint` s the route table is built from, and request
and response schemas from the msgspec structs the endpoints decode with
(``msgspec.json.schema_components``): the document cannot drift from what is
served or validated. A property-based run (schemathesis) in the suite sends
generated requests to every operation and checks each answer is one the document
allows.

``/docs`` is ``static/docs.html``: one page with a small inline script (no CDN:
the collector may run on a closed network) that renders ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from collector.assets import static_file
from collector.directory import KeyKind
from collector.routing import Endpoint

TITLE = "Sightline collector"
VERSION = "1"

SECURITY_SCHEMES = {
    "basicAuth": {"type": "http", "scheme": "basic", "description": "The key as the user name"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A key as a bearer token"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
    "gameballKey": {"type": "apiKey", "in": "header", "name": "APIKey"},
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "sightline_session",
        "description": "The dashboard session (GET /ui/login); POST and DELETE also need "
        "X-Sightline-CSRF",
    },
}

_DESCRIPTIONS = {
    200: "OK",
    304: "Not modified",
    201: "Created",
    202: "Accepted for processing",
    204: "Accepted: no content",
    303: "See other: go to the Location",
    400: "Invalid input: the failing fields and why",
    401: "No key, or an unknown key",
    403: "The key may not do this",
    404: "Not found",
    413: "Body too large",
    422: "Invalid input: a list of field errors",
    429: "Over the product's rate limit: retry after Retry-After seconds",
    503: "The event queue is unavailable: retry later",
}

_KEY_NOTES = {
    KeyKind.WRITE: "Key: a write key (public) or a server key.",
    KeyKind.SERVER: "Key: a server key (secret).",
}


def _content(endpoint: Endpoint, status: int, schema: dict[str, Any] | None) -> dict[str, Any]:
    """A response's ``content``: JSON where there is a schema, else the endpoint's media."""
    if status in (204, 304):  # no body
        return {}
    if schema is not None:
        return {"content": {"application/json": {"schema": schema}}}
    media = endpoint.media_by_status.get(status, (endpoint.media,))
    return {"content": {name: {} for name in media}}


def _operation(endpoint: Endpoint, method: str, schema_of: dict[Any, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "operationId": f"{endpoint.name}.{method}",
        "summary": endpoint.summary,
        "tags": [endpoint.dialect],
        "responses": {
            str(status): {
                "description": _DESCRIPTIONS.get(status, "Response"),
                **_content(endpoint, status, schema_of[t] if t is not None else None),
            }
            for status, t in endpoint.responses.items()
        },
    }
    notes = [endpoint.description] if endpoint.description else []
    if endpoint.key is not None:
        notes.append(_KEY_NOTES[endpoint.key])
    if endpoint.reads:
        notes.append(
            "Needs a read key of the product or an admin token (Bearer), or the dashboard "
            "session; never a write key."
        )
    if notes:
        entry["description"] = " ".join(notes)
    if endpoint.parameters:
        entry["parameters"] = list(endpoint.parameters)
    if endpoint.request is not None:
        entry["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema_of[endpoint.request]}},
        }
    if endpoint.schemes:
        entry["security"] = [{name: []} for name in endpoint.schemes] + (
            [{}] if endpoint.key_in_body else []
        )
    return entry


def build_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The whole document for ``endpoints``."""
    types: list[Any] = []
    for endpoint in endpoints:
        if endpoint.request is not None:
            types.append(endpoint.request)
        types.extend(t for t in endpoint.responses.values() if t is not None)
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(
        unique, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(unique, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        for method in endpoint.methods:
            lower = method.lower()
            paths.setdefault(endpoint.path, {})[lower] = _operation(endpoint, lower, schema_of)
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


@cache
def served_document() -> bytes:
    """The document of the route table, encoded once per process (it depends on code only)."""
    from collector.routes import ENDPOINTS  # the route table lists this module's endpoints

    return msgspec.json.encode(build_document(ENDPOINTS))


async def openapi_document(request: Request) -> Response:
    return Response(served_document(), media_type="application/json")


@cache
def _docs_html() -> bytes:
    return static_file("docs.html")


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_docs_html())
