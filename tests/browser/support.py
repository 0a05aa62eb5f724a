"""The servers behind the browser tests: a capture collector and a test website.

The *capture server* is a small Starlette app that serves ``/s.js`` through
``collector.snippet`` exactly as the real collector does, answers ``/v1/batch`` and
``/p.gif`` like it (CORS, 200 / 400 / 503 with Retry-After, a 1x1 GIF) and records every
body it accepted. Each test gets its own write key (:class:`CaptureCollector`) and sees
only its own messages, so a beacon arriving late from an earlier test cannot leak in.

To point the same tests at the real collector, give the ``collector`` fixture an object
of the :class:`Collector` shape: ``url`` (the base URL the snippet sends to),
``write_key``, ``messages(**match)``, ``wait_for(count, timeout, **match)`` and
``set_down(down)`` (make ``/v1/batch`` answer 503).

The test pages come from a second origin (:class:`Site`), as on a customer's website, so
every request to the collector is cross-origin.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from playwright.sync_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from collector.snippet import SnippetAsset, assets_state, serve_extension_module, serve_snippet

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "static"
CHROMIUM = os.environ.get("SIGHTLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in CI containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_SECONDS = 15.0
"""How long a browser test waits for something that should happen (a shared CI machine under
the whole suite can take several seconds to load a tracker); never a wait for nothing."""
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

Message = dict[str, Any]
PageFactory = Callable[..., str]
"""``make_page(body, head=..., stub=..., **data_attrs)`` -> a page URL."""


# --- a Starlette app on a free port, in a thread --------------------------------------


class ServerThread:
    def __init__(self, app: Starlette) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_SECONDS)


# --- the collector the snippet sends to ----------------------------------------------


class Collector(Protocol):
    url: str
    write_key: str

    def messages(self, **match: Any) -> list[Message]: ...

    def wait_for(
        self, count: int = 1, timeout: float = WAIT_SECONDS, **match: Any
    ) -> list[Message]: ...

    def set_down(self, down: bool) -> None: ...


def matches(message: Message, match: dict[str, Any]) -> bool:
    return all(message.get(key) == value for key, value in match.items())


@dataclass
class Capture:
    """What the capture server received, for every write key."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: list[dict[str, Any]] = field(default_factory=list)
    pixels: list[dict[str, str]] = field(default_factory=list)
    refused: int = 0
    down: bool = False


@dataclass
class CaptureCollector:
    """One test's view of the capture server: its own write key, its own messages."""

    capture: Capture
    url: str
    write_key: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}")

    def batches(self) -> list[dict[str, Any]]:
        with self.capture.lock:
            return [b for b in self.capture.batches if b["body"].get("writeKey") == self.write_key]

    def pixels(self) -> list[dict[str, str]]:
        with self.capture.lock:
            return [p for p in self.capture.pixels if p.get("k") == self.write_key]

    def deliveries(self) -> list[Message]:
        """Every message as it came over the wire, resends included."""
        found = [m for b in self.batches() for m in b["body"]["batch"]]
        for pixel in self.pixels():
            if "d" in pixel:
                found.append(json.loads(pixel["d"]))
        return found

    def messages(self, **match: Any) -> list[Message]:
        """The messages matching ``match``, deduplicated on messageId as the collector
        does (a resend after an unanswered request is allowed, a second event is not)."""
        unique: dict[str, Message] = {}
        for message in self.deliveries():
            unique.setdefault(message["messageId"], message)
        return [m for m in unique.values() if matches(m, match)]

    def wait_for(
        self, count: int = 1, timeout: float = WAIT_SECONDS, **match: Any
    ) -> list[Message]:
        """Waits until at least ``count`` messages match; returns all that match."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(**match)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def set_down(self, down: bool) -> None:
        """Answer 503 + Retry-After, as the collector does when its queue is down."""
        with self.capture.lock:
            self.capture.down = down


def cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }


def capture_app(capture: Capture) -> Starlette:
    async def batch(request: Request) -> Response:
        headers = cors_headers(request)
        if request.method == "OPTIONS":
            headers |= {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            }
            return Response(status_code=204, headers=headers)
        with capture.lock:
            if capture.down:
                capture.refused += 1
                return JSONResponse(
                    {"error": "queue unavailable"},
                    status_code=503,
                    headers=headers | {"Retry-After": "1"},
                )
        raw = await request.body()
        try:
            body = json.loads(raw)
            messages = body["batch"]
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and m.get("messageId") and m.get("type") for m in messages
            ):
                raise ValueError("batch")
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": "invalid body", "errors": [{"field": "batch", "reason": "invalid"}]},
                status_code=400,
                headers=headers,
            )
        record = {
            "body": body,
            "content_type": request.headers.get("content-type", ""),
            "origin": request.headers.get("origin"),
        }
        with capture.lock:
            capture.batches.append(record)
        return JSONResponse({"success": True}, headers=headers)

    async def pixel(request: Request) -> Response:
        with capture.lock:
            capture.pixels.append(dict(request.query_params))
        return Response(GIF, media_type="image/gif", headers={"Cache-Control": "no-store"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, SnippetAsset]]:
        yield assets_state()

    return Starlette(
        routes=[
            Route("/s.js", serve_snippet),
            Route("/sightline-ext.js", serve_extension_module),
            Route("/v1/batch", batch, methods=["POST", "OPTIONS"]),
            Route("/p.gif", pixel),
        ],
        lifespan=lifespan,
    )


# --- the website the test pages come from --------------------------------------------


@dataclass
class Site:
    url: str
    pages: dict[str, str] = field(default_factory=dict)

    def add(self, html: str) -> str:
        path = f"/t/{uuid.uuid4().hex[:10]}/index.html"
        self.pages[path] = html
        return self.url + path


def site_app(site: Site) -> Starlette:
    async def page(request: Request) -> Response:
        html = site.pages.get(request.url.path)
        if html is None:
            return HTMLResponse("<!doctype html><title>other page</title><p>other", status_code=200)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/{path:path}", page)])


def wait_until_delivered(page: Page) -> None:
    """Until the page has seen the collector's answer (its stored messages are gone)."""
    page.wait_for_function("!Object.keys(localStorage).some(k => k.startsWith('sl_b_'))")


def hide_page(page: Page) -> None:
    """What the page sees when its tab goes to the background: ``visibilitychange`` with
    ``document.hidden`` true (the snippet sends its engagement and flushes)."""
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )


def navigate_like_a_spa(page: Page, base: str) -> list[str]:
    """pushState, a same-URL replaceState, a double push, popstate and a replace; returns
    the paths that must each be counted once as a page view, in order."""
    page.evaluate("history.pushState({}, '', 'a')")
    page.evaluate("history.replaceState({scroll: 1}, '')")  # same URL: state only
    page.evaluate("history.pushState({}, '', 'a')")  # a router pushing twice
    page.evaluate("history.pushState({}, '', 'b?tab=2')")
    page.go_back()  # popstate -> a
    page.wait_for_function("location.pathname.endsWith('/a')")
    page.evaluate("history.replaceState({}, '', 'c')")
    folder = base.rsplit("/", 1)[0]
    return [base, f"{folder}/a", f"{folder}/b", f"{folder}/a", f"{folder}/c"]
