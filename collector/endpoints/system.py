"""Operational and asset routes: health, metrics, the API document, the snippet files."""

from __future__ import annotations

from typing import Any

import msgspec

from collector.metrics import metrics_endpoint
from collector.openapi import docs_page, openapi_document
from collector.routing import Endpoint, ErrorBody
from collector.snippet import serve_extension_module, serve_snippet
from collector.system import health


class Health(msgspec.Struct, kw_only=True):
    status: str
    """``ok``; ``degraded``: no live worker (events accepted, not stored yet); ``unavailable``"""
    redis: str
    workers: int
    """Live Sightline workers of the queue."""


ENDPOINTS = (
    Endpoint(
        "/health",
        ("GET",),
        health,
        "system.health",
        "Can this collector reach Redis",
        responses={200: Health, 503: Health},
    ),
    Endpoint(
        "/metrics",
        ("GET",),
        metrics_endpoint,
        "system.metrics",
        "Prometheus metrics",
        responses={200: None, 401: ErrorBody, 403: ErrorBody},
        media="text/plain",
        description=(
            "With `Authorization: Bearer` and the collector's `SIGHTLINE_METRICS_TOKEN`; "
            "without it, only a scrape straight from a loopback address (unless "
            "`SIGHTLINE_METRICS_LOOPBACK=token`). `401` with a token set, `403` without."
        ),
    ),
    Endpoint(
        "/s.js",
        ("GET",),
        serve_snippet,
        "snippet.serve_snippet",
        "The browser tracking snippet",
        responses={200: None, 304: None},
        media="application/javascript",
    ),
    Endpoint(
        "/sightline-ext.js",
        ("GET",),
        serve_extension_module,
        "snippet.serve_extension_module",
        "The browser-extension module",
        responses={200: None, 304: None},
        media="application/javascript",
    ),
    Endpoint(
        "/openapi.json",
        ("GET",),
        openapi_document,
        "system.openapi",
        "This document",
        responses={200: dict[str, Any]},
    ),
    Endpoint(
        "/docs",
        ("GET",),
        docs_page,
        "system.docs",
        "This document as a web page",
        responses={200: None},
        media="text/html",
    ),
)
