"""The ingest routes that carry the traffic, dispatched in front of Starlette.

Every acknowledged request suspends once (for its group commit's Redis
acknowledgement), and resuming it walks back through every coroutine frame between
the server and the endpoint: Starlette's application and server-error layers, our
metrics and CORS middlewares, Starlette's exception middleware, router, route and
request/response wrappers are nine of them. :class:`CollectorApp` (Starlette, with
one check in front) hands a ``POST`` to one of the ingest paths straight to its
endpoint function, and :class:`HotPaths` does what those layers would: renders the
errors an endpoint raises with the app's own handlers, answers 500 to anything else
(and re-raises it for the server to log, as Starlette's server-error layer does),
adds the CORS grant (the same rule, ``collector.cors``) and counts the answer
(``collector.metrics``). Everything else (preflights included) goes down Starlette's
stack as before.

Its requests read their headers from one dict built once (``HotRequest``): Starlette's
``Headers.get`` scans the header list per lookup and raises and catches a ``KeyError``
for every header that is absent (most of the dozen an ingest request asks about).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Address, Headers, State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from collector.cors import grant_headers, is_granted
from collector.metrics import Metrics
from collector.routing import Endpoint


@functools.lru_cache(maxsize=256)
def _header_name(key: str) -> bytes:
    """A header name as ASGI carries it (the names asked for are the code's own: few)."""
    return key.lower().encode("latin-1")


class DictHeaders(Headers):
    """Starlette's ``Headers`` with lookups by one dict (the first of repeated names wins,
    as ``Headers`` answers); ``getlist``, iteration and the rest are Starlette's own."""

    def __init__(self, scope: Scope) -> None:
        headers = scope["headers"]
        if type(headers) is not list:  # as ``Headers`` does
            headers = scope["headers"] = list(headers)
        self._list = headers
        self._first: dict[bytes, bytes] = dict(reversed(self._list))

    def get(self, key: str, default: Any = None) -> Any:
        value = self._first.get(_header_name(key))
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        value = self._first.get(_header_name(key))
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and _header_name(key) in self._first


class DictState(State):
    """Starlette's ``State`` whose attributes are the request's state dict itself.

    ``State`` answers each attribute from its ``__getattr__``, which Python calls only
    after the ordinary lookup failed (an ``AttributeError`` raised and caught per read);
    here the ordinary lookup finds it. Writes and deletions go to the same dict, as
    ``State``'s do."""

    def __init__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "__dict__", state)

    @property
    def _state(self) -> dict[str, Any]:
        return self.__dict__

    @_state.setter
    def _state(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "__dict__", state)


class HotRequest(Request):
    """A request whose headers (a :class:`DictHeaders`), state (a :class:`DictState`) and
    client address are made once, and read as plain attributes.

    ``Request`` answers them from properties (a call per read, ~0.07 µs, and an ingest
    request reads them a dozen times); class attributes that are not descriptors let the
    instance's own values through."""

    headers: Headers = None  # type: ignore[assignment]
    state: State = None  # type: ignore[assignment]
    client: Address | None = None

    def __init__(self, scope: Scope, receive: Receive) -> None:
        super().__init__(scope, receive)
        self.headers = DictHeaders(scope)
        self.state = DictState(scope.setdefault("state", {}))
        host_port = scope.get("client")
        self.client = None if host_port is None else Address(*host_port)


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class HotPaths:
    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        handlers: dict[type[Exception], ErrorHandler],
        metrics: Metrics,
    ) -> None:
        self.metrics = metrics
        self.routes = {
            endpoint.path: endpoint
            for endpoint in endpoints
            if "POST" in endpoint.methods and "{" not in endpoint.path
        }
        self.handlers = tuple(handlers.items())

    def route(self, scope: Scope) -> Endpoint | None:
        """The ingest endpoint of this request, if it is one of the hot ``POST`` paths."""
        if scope["type"] == "http" and scope["method"] == "POST":
            return self.routes.get(scope["path"])
        return None

    async def fail(
        self, request: Request, endpoint: Endpoint, exc: Exception, send: Send
    ) -> Response:
        """The answer to an error an endpoint raised: the app's handler's, else a 500 (sent
        here) and ``exc`` raised again for the server to log."""
        for kind, handler in self.handlers:
            if isinstance(exc, kind):
                return await handler(request, exc)
        self.metrics.count_request(endpoint.dialect, 500)
        await PlainTextResponse("Internal Server Error", status_code=500)(
            request.scope, request.receive, send
        )
        raise exc

    def finish(self, request: Request, endpoint: Endpoint, response: Response) -> None:
        """What the middlewares would add to an answer: the CORS grant, the count."""
        origin = request.headers.get("origin")
        if origin is not None:
            allowed = is_granted(request.state.directory, origin)
            response.raw_headers.extend(grant_headers(allowed, origin))
        self.metrics.count_request(endpoint.dialect, response.status_code)


class CollectorApp(Starlette):
    """Starlette, with the hot ingest paths served before its middleware stack."""

    def __init__(self, *, hot: HotPaths, **options: Any) -> None:
        super().__init__(**options)
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.hot.route(scope)
        if endpoint is None:
            await super().__call__(scope, receive, send)
            return
        # Served here, not in a coroutine of its own: one frame fewer for the request to
        # suspend and resume through.
        scope["app"] = self
        hot = self.hot
        request = HotRequest(scope, receive)
        try:
            response = await endpoint.handler(request)
        except Exception as exc:
            response = await hot.fail(request, endpoint, exc, send)
        hot.finish(request, endpoint, response)
        await response(scope, receive, send)
