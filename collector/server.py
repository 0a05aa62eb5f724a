"""uvicorn's httptools protocol with the limits a public collector needs.

uvicorn bounds neither the request head nor the time a client may take to send it
(with httptools, a 50 MB ``Cookie`` is read whole, and a connection that sends half
a head or half a body is held forever). This protocol adds, per connection:

- the request head (request line and headers) at most ``MAX_HEAD_BYTES``, at most
  ``MAX_HEADERS`` headers: else ``431`` and the connection is closed;
- the head complete within ``HEAD_TIMEOUT`` seconds of the connection or of the
  request's first byte, and no pause longer than ``BODY_TIMEOUT`` seconds while a body
  is sent: else ``408`` (if no answer started) and the connection is closed, which
  the app sees as a disconnect (nothing of that request is accepted).

It also writes a response's head and its first body part in one ``write`` (one
system call, one TCP segment), where uvicorn writes each as the ASGI message comes:
``_OneWrite`` holds a write until the next write of the connection or the end of the
event loop's step, whichever comes first (a streamed body's head is never held
past the step that started it). An ingest answer (a head and a 16-byte body) costs one
``send`` instead of two: ~4 µs of system time per request under wrk.

``sightline up`` and ``sightline collector`` (and so the Procfile) run with it:
``uvicorn.Config(..., http=BoundedHttpToolsProtocol)``.
"""

from __future__ import annotations

from asyncio import AbstractEventLoop, TimerHandle, Transport
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024
"""nginx's default for a request's headers (4 x 8 KB buffers), a little more than h11's."""
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0


class _OneWrite:
    """A connection's transport that joins a write with the next one (see the module).

    A write is held while nothing else is; the next write, a ``close`` or the end of the
    loop's step (a ``call_soon``) sends it. Everything else is the transport's own.
    """

    def __init__(self, transport: Transport, loop: AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._held = None
        self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refusal: int | None = None
        self._deadline: float | None = None
        """When the connection times out (``loop.time()``), if it is armed."""
        self._timer: TimerHandle | None = None
        self._timer_at = 0.0

    # -- timers --------------------------------------------------------------------
    # Each request moves the deadline three times (its head begins, ends, a body part
    # comes) and clears it once. One timer per connection checks it: moved only when it
    # would fire too late, so a request costs no ``call_later`` and no ``cancel`` (they
    # were ~7 µs per request under wrk).

    def _arm(self, seconds: float) -> None:
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._check)

    def _disarm(self) -> None:
        self._deadline = None

    def _check(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:  # moved since the timer was set: wait for it
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._check)
            return
        self._deadline = None
        self._timed_out()

    def _timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self._answer(408, b"Request Timeout")
        else:
            self.transport.close()

    def _answer(self, status: int, reason: bytes) -> None:
        """A bare answer, then close: the request never reaches the app (or is dropped)."""
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason, len(reason), reason)
        )
        self.transport.close()

    # -- protocol --------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        # Duck-typed: what it does not define is the transport's own (``__getattr__``).
        super().connection_made(cast(Transport, _OneWrite(transport, self.loop)))
        self._arm(HEAD_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refusal is not None or (self._in_head and self._head_bytes > MAX_HEAD_BYTES):
            self._disarm()
            if not self.transport.is_closing():
                self._answer(431, b"Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._header_count = True, 0, 0
        self._arm(HEAD_TIMEOUT)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refusal = 431
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refusal is not None:
            return  # answered by data_received, never handed to the app
        super().on_headers_complete()
        self._arm(BODY_TIMEOUT)

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)
            self._arm(BODY_TIMEOUT)

    def on_message_complete(self) -> None:
        self._disarm()
        if self._refusal is None:
            super().on_message_complete()
