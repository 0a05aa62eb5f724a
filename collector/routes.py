"""The route table, generated from the endpoint modules' declarations.

Route names are ``<dialect>.<endpoint>`` (metrics count by dialect). Starlette
tries routes in order: the ingest paths that carry the traffic come first.
"""

from __future__ import annotations

from collector.endpoints import das, fuzy, gameball, native, pixel, pyze, system
from collector.routing import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = (
    *native.ENDPOINTS,
    *pixel.ENDPOINTS,
    *system.ENDPOINTS,
    *fuzy.ENDPOINTS,
    *pyze.ENDPOINTS,
    *das.ENDPOINTS,
    *gameball.ENDPOINTS,
)

routes = [endpoint.route() for endpoint in ENDPOINTS]
