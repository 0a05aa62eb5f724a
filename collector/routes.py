"""The route table. Route names are ``<dialect>.<endpoint>``: metrics count by dialect."""

from __future__ import annotations

from starlette.routing import Route

from collector.dialects import das, fuzy, gameball, native, pixel, pyze
from collector.metrics import metrics_endpoint
from collector.openapi import docs_page, openapi_document
from collector.snippet import serve_extension_module, serve_snippet
from collector.system import health

# Starlette tries routes in order: the ingest paths that carry the traffic come first.
routes = [
    Route("/v1/batch", native.batch, methods=["POST"], name="native.batch"),
    Route("/v1/track", native.track, methods=["POST"], name="native.track"),
    Route("/v1/page", native.page, methods=["POST"], name="native.page"),
    Route("/v1/screen", native.screen, methods=["POST"], name="native.screen"),
    Route("/v1/identify", native.identify, methods=["POST"], name="native.identify"),
    Route("/v1/group", native.group, methods=["POST"], name="native.group"),
    Route("/v1/alias", native.alias, methods=["POST"], name="native.alias"),
    Route("/p.gif", pixel.track_pixel, methods=["GET"], name="pixel.track_pixel"),
    Route("/health", health, methods=["GET"], name="system.health"),
    Route("/metrics", metrics_endpoint, methods=["GET"], name="system.metrics"),
    Route("/s.js", serve_snippet, methods=["GET"], name="snippet.serve_snippet"),
    Route(
        "/sightline-ext.js",
        serve_extension_module,
        methods=["GET"],
        name="snippet.serve_extension_module",
    ),
    Route("/openapi.json", openapi_document, methods=["GET"], name="system.openapi"),
    Route("/docs", docs_page, methods=["GET"], name="system.docs"),
    Route("/v3/product", fuzy.list_products, methods=["GET"], name="fuzy.list_products"),
    Route("/v3/product", fuzy.create_product, methods=["POST"], name="fuzy.create_product"),
    Route(
        "/v3/product/{id}", fuzy.configure_product, methods=["PUT"], name="fuzy.configure_product"
    ),
    Route("/v3/event", fuzy.track_event, methods=["PUT", "POST"], name="fuzy.track_event"),
    Route("/v3/account", fuzy.put_accounts, methods=["PUT", "POST"], name="fuzy.put_accounts"),
    Route("/v3/account", fuzy.get_accounts, methods=["GET"], name="fuzy.get_accounts"),
    Route("/v3/account/{id}", fuzy.get_account_by_id, methods=["GET"], name="fuzy.get_account"),
    Route("/v3/user", fuzy.put_users, methods=["PUT", "POST"], name="fuzy.put_users"),
    Route("/v3/user", fuzy.get_users, methods=["GET"], name="fuzy.get_users"),
    Route("/v3/user/{id}", fuzy.get_user_by_id, methods=["GET"], name="fuzy.get_user"),
    Route("/v1/events", pyze.track_event, methods=["POST"], name="pyze.track_event"),
    Route("/users/profile", pyze.upload_profiles, methods=["POST"], name="pyze.upload_profiles"),
    Route("/users/profile/{id}", pyze.read_profile, methods=["GET"], name="pyze.read_profile"),
    Route(
        "/api/v1/analytics_events",
        das.create_analytics_event,
        methods=["POST"],
        name="das.create_analytics_event",
    ),
    Route(
        "/api/v1/lead_analytics",
        das.create_lead_event,
        methods=["POST"],
        name="das.create_lead_event",
    ),
    Route(
        "/api/v1/lead_analytics/search",
        das.search_lead_events,
        methods=["GET"],
        name="das.search_lead_events",
    ),
    Route(
        "/api/v1/contact_analytics",
        das.create_contact_event,
        methods=["POST"],
        name="das.create_contact_event",
    ),
    Route(
        "/api/v1/contact_analytics/search",
        das.search_contact_events,
        methods=["GET"],
        name="das.search_contact_events",
    ),
    Route(
        "/integrations/event", gameball.track_event, methods=["POST"], name="gameball.track_event"
    ),
]
