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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.cors import grant_headers, is_granted
from collector.metrics import Metrics
from collector.routing import Endpoint

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
        request = Request(scope, receive)
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
