"""``collector.server``: a response's head and body leave in one write; timeouts still hold.

The joining is checked on a transport that records what would reach the socket (what
TCP makes of two writes on loopback is not observable); the timeouts against the
real server are in tests/attack/test_http_limits.py.
"""

from __future__ import annotations

import asyncio
from asyncio import Transport
from typing import Any, cast

from collector.server import _OneWrite


class Socket:
    """The transport's far side: each write it was given, and whether it closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name == "sockname" else default


def run(steps: Any) -> Socket:
    async def main() -> Socket:
        sock = Socket()
        await steps(_OneWrite(cast(Transport, sock), asyncio.get_running_loop()), sock)
        return sock

    return asyncio.run(main())


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def steps(transport: _OneWrite, sock: Socket) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n")
        transport.write(b'{"success":true}')
        assert sock.writes == [b'HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n{"success":true}']
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # the next answer, bodiless
        transport.write(b"")
        await asyncio.sleep(0)

    assert run(steps).writes[1:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_a_lone_write_leaves_at_the_end_of_the_step() -> None:
    """A streamed response's head is not held until its first part (server-sent events)."""

    async def steps(transport: _OneWrite, sock: Socket) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        assert sock.writes == []
        await asyncio.sleep(0)
        assert sock.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
        transport.write(b"5\r\nhello\r\n")
        await asyncio.sleep(0)
        transport.write(b"0\r\n\r\n")
        await asyncio.sleep(0)

    assert run(steps).writes == [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
    ]


def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    async def steps(transport: _OneWrite, sock: Socket) -> None:
        transport.write(b"HTTP/1.1 408 Request Timeout\r\n\r\nRequest Timeout")
        transport.close()
        assert sock.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\nRequest Timeout"]
        assert sock.closed

    run(steps)

    async def aborted(transport: _OneWrite, sock: Socket) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.abort()
        await asyncio.sleep(0)

    assert run(aborted).writes == []


def test_everything_else_is_the_transports() -> None:
    async def steps(transport: _OneWrite, sock: Socket) -> None:
        assert transport.get_extra_info("sockname") == ("127.0.0.1", 8000)
        assert not transport.is_closing()

    run(steps)
