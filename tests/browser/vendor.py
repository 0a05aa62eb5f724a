"""A page server for third-party trackers loaded from node_modules, and a live collector for a
whole test module (one per module keeps the browser tests fast).

Nothing leaves the machine: :func:`local_only` routes a browser context's requests, lets
127.0.0.1 through and records anything else (the test asserts it recorded nothing).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import BrowserContext, Route
from redis import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route as StarletteRoute

from sightline.settings import Settings
from tests.browser.live import LiveCollector
from tests.browser.support import ServerThread
from tests.harness import REDIS_TIMEOUT
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"


@dataclass
class VendorSite:
    """Pages at ``/t/<id>/...`` and files of node_modules packages at ``/vendor/<name>/``.

    An ES module's extensionless import (``./lib/tracker``, as TypeScript emits it) is
    resolved to ``.js``, as a bundler would.
    """

    folders: dict[str, Path]
    url: str = ""
    pages: dict[str, str] = field(default_factory=dict)

    def add(self, html: str, name: str = "index.html") -> str:
        path = f"/t/{uuid.uuid4().hex[:10]}/{name}"
        self.pages[path] = html
        return self.url + path

    def app(self) -> Starlette:
        async def page(request: Request) -> Response:
            html = self.pages.get(request.url.path)
            if html is None:
                return HTMLResponse("not found", status_code=404)
            return HTMLResponse(html, headers={"Cache-Control": "no-store"})

        async def vendor(request: Request) -> Response:
            folder = self.folders.get(request.path_params["name"])
            rest = request.path_params["rest"]
            if folder is None or ".." in rest.split("/"):
                return Response(status_code=404)
            path = folder / rest
            if not path.is_file() and path.with_name(path.name + ".js").is_file():
                path = path.with_name(path.name + ".js")
            if not path.is_file():
                return Response(status_code=404)
            return FileResponse(path, media_type="text/javascript")

        return Starlette(
            routes=[
                StarletteRoute("/vendor/{name}/{rest:path}", vendor),
                StarletteRoute("/t/{rest:path}", page),
            ]
        )


@contextmanager
def serving(site: VendorSite) -> Iterator[VendorSite]:
    with ServerThread(site.app()) as server:
        site.url = server.url
        yield site


@contextmanager
def module_collector(
    workdir: Path, redis: RedisServer, sqlite_template: Path, origins: tuple[str, ...]
) -> Iterator[LiveCollector]:
    """A real collector on a fresh SQLite copy and the suite's Redis (flushed first)."""
    database = workdir / "sightline.db"
    shutil.copyfile(sqlite_template, database)
    client = Redis.from_url(redis.url)
    client.flushall()
    client.close()
    settings = Settings.from_env(
        {
            "SIGHTLINE_DATA_DIR": str(workdir / "data"),
            "REDIS_URL": redis.url,
            "DATABASE_URL": f"sqlite:///{database}",
            "SIGHTLINE_FLUSH_LINGER_MS": "0",
            "SIGHTLINE_REDIS_TIMEOUT": REDIS_TIMEOUT,
        }
    )
    with LiveCollector(settings, redis, origins=origins) as collector:
        yield collector


def local_only(context: BrowserContext) -> list[str]:
    """Abort every request off 127.0.0.1; returns the list of what was tried."""
    offsite: list[str] = []

    def route(request_route: Route) -> None:
        url = request_route.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            request_route.continue_()
        else:
            offsite.append(url)
            request_route.abort()

    context.route("**/*", route)
    return offsite
