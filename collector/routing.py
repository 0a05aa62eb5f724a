"""How an endpoint module declares its routes: once, for the route table and OpenAPI.

Each module under ``collector.endpoints`` lists its :class:`Endpoint` s in
``ENDPOINTS``. ``collector.routes`` turns them into Starlette routes and
``collector.openapi`` into the OpenAPI document, so a route cannot be served
without being documented, nor documented without being served.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.directory import KeyKind
from sightline.errors import FieldError

Handler = Callable[[Request], Awaitable[Response]]
Schema = Any
"""A Python type msgspec can describe, or ``None`` for a body that is not JSON."""


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every client error outside the DAS dialect: what went wrong and which fields.

    ``code`` and ``message`` are what Segment-style SDKs read from an error answer;
    ``error`` (the same text as ``message``) and ``errors`` are Sightline's own.
    """

    success: bool
    code: str
    """``invalid_input``, ``unauthorized``, ``forbidden``, ``not_found``,
    ``payload_too_large``, ``unsupported_media_type``, ``queue_unavailable``..."""
    message: str
    error: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


INGEST_ERRORS: dict[int, Schema] = {
    400: ErrorBody,
    401: ErrorBody,
    403: ErrorBody,
    413: ErrorBody,
    415: ErrorBody,
    429: ErrorBody,
    503: ErrorBody,
}
READ_ERRORS: dict[int, Schema] = {400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody}

# How a key travels (OpenAPI security schemes, defined in ``collector.openapi``).
SERVER_KEY_SCHEMES = ("bearerAuth", "apiKeyHeader")
ANY_KEY_SCHEMES = ("basicAuth", "bearerAuth", "apiKeyHeader")


def path_id(what: str) -> tuple[dict[str, Any], ...]:
    """The ``{id}`` path parameter."""
    return (
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": what,
        },
    )


@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: tuple[str, ...]
    handler: Handler
    name: str
    """``<dialect>.<endpoint>``: metrics count requests by the part before the dot."""
    summary: str
    key: KeyKind | None = None
    """The least key the endpoint needs: ``None`` (no key), a write key or a server key."""
    schemes: tuple[str, ...] = ()
    """How the key may travel (OpenAPI security schemes)."""
    key_in_body: bool = False
    """The key may travel in the body instead (``writeKey``, ``appKey``)."""
    request: Schema = None
    responses: dict[int, Schema] = field(default_factory=dict)
    parameters: tuple[dict[str, Any], ...] = ()
    media: str = "application/json"
    """The media of responses without a schema."""
    media_by_status: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Statuses answered in other (or several) media than ``media``."""
    description: str = ""
    reads: bool = False
    """It returns stored data: a read key of the product, an admin token or the dashboard
    session (``collector.readauth``), never a write key (tests/api/test_route_table.py)."""

    @functools.cached_property
    def dialect(self) -> str:
        return self.name.split(".", 1)[0]

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=list(self.methods), name=self.name)
