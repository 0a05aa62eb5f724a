"""CORS by product: a browser may send from an origin some product allows.

Preflights carry no key, so they are granted when any product allows the origin;
the real request is then checked against its own product (403 otherwise). A
product with no allowed origins accepts any origin.

An allowed origin gets its grant (``Access-Control-Allow-Origin`` and
``-Credentials``) on every answer, refusals included, so the snippet can read why it
was refused. An origin that is not allowed gets no CORS grant: its preflight is a
403 and every other answer carries no ``Access-Control-*`` header at all, while its
events are still refused with a clear status and JSON error (readable by curl or a
server, not by the page). Only an endpoint that grants itself keeps its own grant
(``/s.js`` is a public asset: ``*``).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.directory import ProductDirectory

ALLOW_METHODS = "GET, POST, PUT, OPTIONS"
DEFAULT_ALLOW_HEADERS = "Authorization, Content-Type, X-Write-Key, APIKey, X-API-Key"


def is_granted(directory: ProductDirectory, origin: str) -> bool:
    """Whether a browser at ``origin`` gets a grant: some product allows it.

    ``null`` is every sandboxed frame, data: and file: page at once: it names no site to
    grant, so it never gets a grant, least of all one with credentials.
    """
    return origin != "null" and directory.any_allows_origin(origin)


def grant_headers(allowed: bool, origin: str) -> list[tuple[bytes, bytes]]:
    """The headers of an answer (not a preflight) to a request from ``origin``."""
    vary = (b"vary", b"Origin")  # granted or not depends on Origin
    if not allowed:
        return [vary]
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        vary,
    ]


class ProductCORSMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        directory: ProductDirectory = scope["state"]["directory"]
        allowed = is_granted(directory, origin)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(allowed, origin, headers, scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                # An endpoint that granted it itself (/s.js: "*") keeps its own: a second
                # value is a CORS failure, which would block <script crossorigin> (SRI).
                granted = any(name.lower() == b"access-control-allow-origin" for name, _ in raw)
                if not granted:
                    raw.extend(grant_headers(allowed, origin))
                    message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self,
        allowed: bool,
        origin: str,
        headers: Headers,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if not allowed:
            response = Response(f"origin {origin} is not allowed", status_code=403)
        else:
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": headers.get(
                        "access-control-request-headers", DEFAULT_ALLOW_HEADERS
                    ),
                    "Access-Control-Allow-Credentials": "true",
                    "Access-Control-Max-Age": "86400",
                    "Vary": "Origin",
                },
            )
        await response(scope, receive, send)
