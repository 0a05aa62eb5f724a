"""The ingest routes that carry the traffic, dispatched below Starlette's routing.

Every acknowledged request suspends once (for its group commit's Redis
acknowledgement), and resuming it walks back through every coroutine frame between
the server and the endpoint: our metrics and CORS middlewares, Starlette's exception
middleware, router, route and request/response wrappers are seven of them. This
middleware, the first of the app, hands a ``POST`` to one of the ingest paths straight
to its endpoint function and does what those layers would: renders the errors an
endpoint raises with the app's own handlers, adds the CORS grant (the same rule,
``collector.cors``) and counts the answer (``collector.metrics``). Everything else
(preflights included) goes down Starlette's stack as before.

Its requests read their headers from one dict built once (``HotRequest``): Starlette's
``Headers.get`` scans the header list per lookup and raises and catches a ``KeyError``
for every header that is absent (most of the dozen an ingest request asks about).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.cors import grant_headers, is_granted
from collector.metrics import Metrics
from collector.routing import Endpoint


class DictHeaders(Headers):
    """Starlette's ``Headers`` with lookups by one dict (the first of repeated names wins,
    as ``Headers`` answers); ``getlist``, iteration and the rest are Starlette's own."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        self._first = {key: value for key, value in reversed(self._list)}

    def get(self, key: str, default: Any = None) -> Any:
        value = self._first.get(key.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        value = self._first.get(key.lower().encode("latin-1"))
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower().encode("latin-1") in self._first


class HotRequest(Request):
    """A request whose headers are a :class:`DictHeaders`."""

    @property
    def headers(self) -> Headers:
        if not hasattr(self, "_headers"):
            self._headers = DictHeaders(self.scope)
        return self._headers


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class HotPaths:
    def __init__(
        self,
        app: ASGIApp,
        endpoints: Iterable[Endpoint],
        handlers: dict[type[Exception], ErrorHandler],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = {
            endpoint.path: endpoint
            for endpoint in endpoints
            if "POST" in endpoint.methods and "{" not in endpoint.path
        }
        self.handlers = tuple(handlers.items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = HotRequest(scope, receive)
        try:
            response = await endpoint.handler(request)
        except Exception as exc:
            for kind, handler in self.handlers:
                if isinstance(exc, kind):
                    response = await handler(request, exc)
                    break
            else:
                self.metrics.count_request(endpoint.dialect, 500)
                raise
        origin = request.headers.get("origin")
        if origin is not None:
            allowed = is_granted(request.state.directory, origin)
            response.raw_headers.extend(grant_headers(allowed, origin))
        self.metrics.count_request(endpoint.dialect, response.status_code)
        await response(scope, receive, send)
