"""The dashboard page: ``GET /ui`` and its two assets, ``/ui/app.js`` and ``/ui/app.css``.

Three files of ``static/`` (``collector.assets``): ``ui.html``, ``ui.min.js`` (built by
``npm run build:ui`` from ``static/ui/*.js`` and uPlot, committed) and ``ui.css`` (uPlot's
stylesheet and ``static/ui/dashboard.css``). The page holds no data: its script reads
everything from ``/api/v1`` with the dashboard session (``collector.endpoints.login``),
shows a login form when there is none, and sends ``X-Sightline-CSRF`` on every POST.
Nothing is loaded from another origin: the Content-Security-Policy says so.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache

from starlette.requests import Request
from starlette.responses import Response

from collector.assets import static_file
from collector.routing import Endpoint
from collector.snippet import accepts_gzip

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # not no-referrer: Chromium then sends "Origin: null" with the login form, which
    # POST /ui/login refuses (it takes a login from this origin only)
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str

    def response(self, request: Request, cache_control: str) -> Response:
        use_gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = self.etag[:-1] + ('-gz"' if use_gzip else '"')
        headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
        headers |= _SECURITY
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(
            self.gzipped if use_gzip else self.body, media_type=self.media_type, headers=headers
        )


@cache
def asset(name: str, media_type: str) -> Asset:
    """A file of ``static/``, read and gzipped once per process."""
    body = static_file(name)
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Asset(body, gzip.compress(body, 9, mtime=0), media_type, f'"{digest}"')


# The page must be revalidated (a new collector may ship a new script); the assets are
# named by the page, so a short max-age with revalidation is enough.
_PAGE_CACHE = "no-cache"
_ASSET_CACHE = "public, max-age=300, must-revalidate"


async def page(request: Request) -> Response:
    return asset("ui.html", "text/html; charset=utf-8").response(request, _PAGE_CACHE)


async def script(request: Request) -> Response:
    return asset("ui.min.js", "application/javascript; charset=utf-8").response(
        request, _ASSET_CACHE
    )


async def stylesheet(request: Request) -> Response:
    return asset("ui.css", "text/css; charset=utf-8").response(request, _ASSET_CACHE)


ENDPOINTS = (
    Endpoint(
        "/ui",
        ("GET",),
        page,
        "ui.page",
        "The dashboard: live events, traffic, people, dead letters, products",
        responses={200: None, 304: None},
        media="text/html",
    ),
    Endpoint(
        "/ui/app.js",
        ("GET",),
        script,
        "ui.script",
        "The dashboard's script (uPlot bundled)",
        responses={200: None, 304: None},
        media="application/javascript",
    ),
    Endpoint(
        "/ui/app.css",
        ("GET",),
        stylesheet,
        "ui.stylesheet",
        "The dashboard's stylesheet",
        responses={200: None, 304: None},
        media="text/css",
    ),
)
