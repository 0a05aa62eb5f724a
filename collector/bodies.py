"""Reading request bodies with a size cap, before any parsing, inflating them if compressed.

Every ingest endpoint that reads a body reads it here, so every dialect takes
``Content-Encoding: gzip`` (or ``x-gzip``) and ``deflate`` (zlib-wrapped, as HTTP says,
or raw, as some clients send it). The endpoint's limit applies to the body as sent and
again to the inflated body, which is inflated as it streams, at most ``limit + 1``
bytes at a time: a decompression bomb costs its compressed size and one bounded buffer,
never its inflated size. An inflated body more than :data:`MAX_RATIO` times its
compressed size (past :data:`RATIO_FLOOR` bytes) is refused as well (413): no JSON a
client means to send compresses that well.
"""

from __future__ import annotations

import zlib

from starlette.requests import ClientDisconnect, Request

from sightline.errors import ClientError, FieldError, InvalidInput, PayloadTooLarge

MAX_RATIO = 250
"""Inflated / compressed size past which a body is refused (JSON events compress 5-50x)."""
RATIO_FLOOR = 64 * 1024
"""Inflated bodies up to this size are never refused for their ratio."""
IDENTITY = frozenset({"", "identity"})
SUPPORTED = ("gzip", "x-gzip", "deflate")


class _Inflater:
    """Incremental gzip / deflate decoding with a cap on what it produces."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.decoder: zlib._Decompress | None = None
        self.head = b""
        self.parts: list[bytes] = []
        self.inflated = 0
        self.compressed = 0

    def _start(self, data: bytes) -> zlib._Decompress:
        if self.encoding == "deflate":
            # RFC 9110's deflate is zlib-wrapped; some clients send raw deflate.
            cmf, flg = data[0], data[1]
            zlib_wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
            return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> None:
        self.compressed += len(chunk)
        if self.decoder is None:
            self.head += chunk
            if len(self.head) < 2:
                return
            self.decoder = self._start(self.head)
            chunk, self.head = self.head, b""
        self._inflate(chunk)

    def _inflate(self, data: bytes) -> None:
        assert self.decoder is not None
        while data:
            if self.decoder.eof:
                raise self._corrupt("data after the end of the compressed stream")
            try:
                out = self.decoder.decompress(data, self.limit + 1 - self.inflated)
            except zlib.error as exc:
                raise self._corrupt(str(exc)) from None
            self._take(out)
            data = self.decoder.unconsumed_tail
            if not out and data:  # pragma: no cover - zlib always makes progress
                break

    def _take(self, out: bytes) -> None:
        self.inflated += len(out)
        if self.inflated > self.limit:
            raise PayloadTooLarge(
                f"{self.encoding} body inflates past the limit of {self.limit} bytes",
                [FieldError("Content-Encoding", f"inflated body exceeds {self.limit} bytes")],
            )
        if self.inflated > RATIO_FLOOR and self.inflated > MAX_RATIO * self.compressed:
            raise PayloadTooLarge(
                f"{self.encoding} body inflates more than {MAX_RATIO} times its size",
                [FieldError("Content-Encoding", f"compression ratio over {MAX_RATIO}")],
            )
        if out:
            self.parts.append(out)

    def finish(self) -> bytes:
        if self.decoder is None:
            if self.head:
                raise self._corrupt("truncated stream")
            return b""
        try:
            self._take(self.decoder.flush(self.limit + 1 - self.inflated))
        except zlib.error as exc:
            raise self._corrupt(str(exc)) from None
        if not self.decoder.eof:
            raise self._corrupt("truncated stream")
        if self.decoder.unused_data:
            raise self._corrupt("data after the end of the compressed stream")
        return b"".join(self.parts)

    def _corrupt(self, why: str) -> InvalidInput:
        return InvalidInput(
            f"the body is not valid {self.encoding} data: {why}",
            [FieldError("Content-Encoding", f"body is not valid {self.encoding} data")],
        )


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` (gzip or deflate) inflated under the same caps as a body :func:`read_body`
    inflates: for formats that compress inside the body (PostHog's ``compression=gzip-js``)."""
    inflater = _Inflater(encoding, limit)
    inflater.feed(data)
    return inflater.finish()


def _encoding(request: Request) -> str:
    header = request.headers.get("content-encoding")
    if header is None:  # most requests
        return ""
    encoding = header.strip().lower()
    if encoding in IDENTITY or encoding in SUPPORTED:
        return encoding
    raise ClientError(
        f"Content-Encoding {header!r} is not supported: send gzip, deflate or none",
        [FieldError("Content-Encoding", f"must be one of {', '.join(SUPPORTED)} or absent")],
        status=415,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, inflated, or 413 as soon as it is known to exceed ``limit`` bytes.

    Content-Length is trusted to refuse early; a chunked body is counted as it streams.
    ``Content-Encoding`` other than gzip / deflate / identity is a 415 naming the header;
    a corrupt compressed stream is a 400.
    """
    encoding = _encoding(request)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput("Content-Length is not a number") from None
        if size > limit:
            raise PayloadTooLarge(f"body of {size} bytes exceeds the limit of {limit} bytes")
    inflater = None if encoding in IDENTITY else _Inflater(encoding, limit)
    chunks: list[bytes] = []
    total = 0
    # The ASGI messages read here, as ``Request.stream`` would (an async generator per
    # request, two steps for a one-message body, cost ~1 µs of the hot path's ~30).
    receive = request.receive
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            request._is_disconnected = True
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if not more:
            request._stream_consumed = True
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        if inflater is None:
            chunks.append(chunk)
        elif chunk:
            inflater.feed(chunk)
    body = (
        (chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if inflater is None
        else inflater.finish()
    )
    if not body or body.isspace():  # as ``not body.strip()``, without copying the body
        raise InvalidInput("the request body is empty")
    return body
