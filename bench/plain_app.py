"""Baseline of bench/collector.py: a plain Starlette route reading the body, answering 204."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def track(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


app = Starlette(routes=[Route("/v1/track", track, methods=["POST"])])
