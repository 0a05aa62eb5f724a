"""The route table, generated from the endpoint modules' declarations.

Route names are ``<dialect>.<endpoint>`` (metrics count by dialect). Starlette
tries routes in order: the ingest paths that carry the traffic come first.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from collector.debug import PREFIX
from collector.endpoints import (
    api,
    das,
    erasure,
    fuzy,
    ga4,
    gameball,
    login,
    matomo,
    native,
    pixel,
    plausible,
    posthog,
    pyze,
    rudderstack,
    snowplow,
    stats,
    system,
    ui,
    umami,
)
from collector.routing import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = (
    *native.ENDPOINTS,
    *pixel.ENDPOINTS,
    *rudderstack.ENDPOINTS,
    *system.ENDPOINTS,
    *fuzy.ENDPOINTS,
    *pyze.ENDPOINTS,
    *das.ENDPOINTS,
    *gameball.ENDPOINTS,
    *posthog.ENDPOINTS,
    *snowplow.ENDPOINTS,
    *plausible.ENDPOINTS,
    *umami.ENDPOINTS,
    *matomo.ENDPOINTS,
    *ga4.ENDPOINTS,
    *api.ENDPOINTS,
    *erasure.ENDPOINTS,
    *stats.ENDPOINTS,
    *login.ENDPOINTS,
    *ui.ENDPOINTS,
)

routes: list[BaseRoute] = [
    *(endpoint.route() for endpoint in ENDPOINTS),
    # Every ingest route again under /debug: validated and normalised, never stored.
    Mount(
        PREFIX,
        routes=[
            e.route()
            for e in ENDPOINTS
            if e.dialect not in ("system", "snippet", "ui", "erasure") and not e.reads
        ],
        name="debug",
    ),
]
