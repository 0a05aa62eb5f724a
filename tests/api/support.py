"""Read credentials for the API tests: tokens straight from the store."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from sightline.store.tokens import TokenKind, create_token
from tests.harness import System


def token(system: System, product_id: str | None = None) -> str:
    """A new read key of ``product_id``, or an admin token when it is ``None``."""
    kind = TokenKind.ADMIN if product_id is None else TokenKind.READ
    with system.engine.begin() as conn:
        return create_token(conn, kind, product_id=product_id)[1]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def get(system: System, path: str, credential: str, **params: Any) -> Any:
    return system.client.get(path, params=params, headers=bearer(credential))


def track(system: System, event: str, key: str | None = None, **fields: Any) -> None:
    body = {"event": event, "userId": "u1", **fields}
    r = system.send("/v1/track", body, key=key)
    assert r.status_code == 200, r.text


class LiveServer:
    """The collector app under a real uvicorn in a thread (streams need a real server)."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class SSEClient:
    """Reads an event stream in a thread: ``next()`` returns each message with data (or
    every line group, comments and ``retry`` included, with ``comments=True``)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.messages: queue.Queue[dict[str, str]] = queue.Queue()
        self.status: int | None = None
        self.error: Exception | None = None
        self._response: httpx.Response | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "no answer"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=30.0) as response:
                self._response = response
                self.status = response.status_code
                self._ready.set()
                message: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.messages.put({"comment": line[1:].strip()})
                    elif not line:
                        if message:
                            self.messages.put(message)
                        message = {}
                    else:
                        name, _, value = line.partition(":")
                        message[name] = value.removeprefix(" ")
        except Exception as exc:  # closed from the test: the stream ends
            self.error = exc
        finally:
            self._ready.set()
            self.messages.put({"closed": "1"})

    def next(self, timeout: float = 10.0, comments: bool = False) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            if comments or "data" in message or "closed" in message:
                return message

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._thread.join(5)
