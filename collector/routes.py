"""The route table. Route names are ``<dialect>.<endpoint>``: metrics count by dialect."""

from __future__ import annotations

from starlette.routing import Route

from collector.dialects import native
from collector.metrics import metrics_endpoint
from collector.system import health

routes = [
    Route("/health", health, methods=["GET"], name="system.health"),
    Route("/metrics", metrics_endpoint, methods=["GET"], name="system.metrics"),
    Route("/v1/track", native.track, methods=["POST"], name="native.track"),
    Route("/v1/page", native.page, methods=["POST"], name="native.page"),
    Route("/v1/screen", native.screen, methods=["POST"], name="native.screen"),
    Route("/v1/identify", native.identify, methods=["POST"], name="native.identify"),
    Route("/v1/group", native.group, methods=["POST"], name="native.group"),
    Route("/v1/alias", native.alias, methods=["POST"], name="native.alias"),
    Route("/v1/batch", native.batch, methods=["POST"], name="native.batch"),
]
