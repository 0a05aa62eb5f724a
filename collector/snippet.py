"""Serving the browser snippet (``/s.js``) and the extension module.

The assets are built once per process, in the app's lifespan, and reached
through ``request.state`` (see ``assets_state``)::

    routes = [
        Route("/s.js", serve_snippet),
        Route("/sightline-ext.js", serve_extension_module),
    ]

Caching: ``max-age`` is short (5 minutes) and every copy carries a strong ETag, so a
browser revalidates with a cheap ``304`` and a new release reaches every site within
minutes without a versioned URL in the tag people pasted; ``stale-while-revalidate``
keeps page loads from ever waiting on that revalidation.

The gzip body is a different representation from the identity one, so it gets its own
strong ETag (``"<hash>-gz"``, as Apache does) and caches never mix them up; a
conditional request matching either answers ``304``.

The snippet is served as built: ``static/sightline.min.js`` is ``static/sightline.js``
minified by terser (``npm run build``), so no JavaScript tooling runs in production.
It is gzipped with zopfli, whose output is ordinary gzip that any browser inflates,
about 1 % smaller than zlib's level 9; on a 2 KB budget that is 25 bytes of snippet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import zopfli.gzip
from starlette.requests import Request
from starlette.responses import Response

from collector.assets import static_file

JS_MEDIA_TYPE = "application/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"


@dataclass(frozen=True, slots=True)
class SnippetAsset:
    """One JavaScript file as served: read and gzipped once, with its validators."""

    body: bytes
    """The file as served without content coding."""
    gzipped: bytes
    etag: str
    """Strong ETag of ``body``, quoted, e.g. ``"3f2a..."``."""
    gzip_etag: str
    """Strong ETag of ``gzipped``."""

    @classmethod
    def load(cls, name: str) -> SnippetAsset:
        """A UTF-8 JavaScript file of ``static/`` (``collector.assets``), served as it is."""
        return cls.from_source(static_file(name).decode("utf-8"))

    @classmethod
    def from_source(cls, source: str) -> SnippetAsset:
        body = source.encode("utf-8")
        # zopfli's gzip header has mtime 0: the same file gives the same bytes everywhere
        gzipped = zopfli.gzip.compress(body)
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body=body, gzipped=gzipped, etag=f'"{digest}"', gzip_etag=f'"{digest}-gz"')

    @property
    def gzipped_size(self) -> int:
        return len(self.gzipped)

    def response(self, request: Request) -> Response:
        """The asset for this request: 304, gzip or identity."""
        use_gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = self.gzip_etag if use_gzip else self.etag
        headers = {
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Accept-Encoding",
            # a public script: any page may load it, with Subresource Integrity too
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
            "X-Content-Type-Options": "nosniff",
        }
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and etag_matches(if_none_match, (self.etag, self.gzip_etag)):
            return Response(status_code=304, headers=headers)
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzipped, media_type=JS_MEDIA_TYPE, headers=headers)
        return Response(self.body, media_type=JS_MEDIA_TYPE, headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip`` or ``*`` with q > 0)."""
    allowed: dict[str, bool] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        allowed[coding] = quality > 0
    if "gzip" in allowed:
        return allowed["gzip"]
    return allowed.get("x-gzip", allowed.get("*", False))


def etag_matches(if_none_match: str, etags: tuple[str, ...]) -> bool:
    """``If-None-Match`` uses the weak comparison: ``W/`` prefixes are ignored."""
    if if_none_match.strip() == "*":
        return True
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return any(etag in candidates for etag in etags)


async def serve_snippet(request: Request) -> Response:
    """``GET /s.js``: the browser snippet, from the lifespan state."""
    asset: SnippetAsset = request.state.snippet
    return asset.response(request)


async def serve_extension_module(request: Request) -> Response:
    """``GET /sightline-ext.js``: the extension module, for authors to download and bundle
    (extensions may not load remote code), from the lifespan state."""
    asset: SnippetAsset = request.state.extension_module
    return asset.response(request)


SNIPPET_FILE = "sightline.min.js"
"""The built snippet in ``static/`` (its source is ``sightline.js``)."""
EXTENSION_FILE = "sightline-ext.js"


def assets_state() -> dict[str, SnippetAsset]:
    """The lifespan state entries the two endpoints read."""
    return {
        "snippet": SnippetAsset.load(SNIPPET_FILE),
        # Kept readable: extension store reviewers read the code they ship.
        "extension_module": SnippetAsset.load(EXTENSION_FILE),
    }
