"""``/api/v1/live`` on a real server: events once stored, filters, heartbeat,
``Last-Event-ID`` resume, a slow client cut off without delaying storage, and nothing
published while nobody watches (a gap entry when someone watches again)."""

from __future__ import annotations

import json
import queue
import socket
import time
from collections.abc import Iterator

import pytest
from redis import Redis

from collector import live
from collector.app import create_app
from sightline import live as published
from sightline.redis_keys import live_stream_key, live_viewers_key
from tests.api.support import LiveServer, SSEClient, bearer, token, track
from tests.harness import System


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats every 0.2 s: a closed test client is noticed at once by the server."""
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)


@pytest.fixture
def server(system: System) -> Iterator[LiveServer]:
    with LiveServer(create_app(system.settings)) as running:
        yield running


def stream_ids(system: System) -> list[str]:
    redis = Redis.from_url(system.settings.redis_url or "")
    try:
        return [i.decode() for i, _ in redis.xrange(live_stream_key(system.settings.queue_name))]
    finally:
        redis.close()


def test_stored_events_arrive_once_stored_and_filtered(system: System, server: LiveServer) -> None:
    mine = token(system, system.product.id)
    other = system.create_product("Other")
    client = SSEClient(f"{server.url}/api/v1/live?type=track", bearer(mine))
    refused = SSEClient(f"{server.url}/api/v1/live?product={other.id}", bearer(mine))
    try:
        assert client.status == 200 and refused.status == 403
        assert client.next(comments=True) == {"retry": "2000"}
        assert client.next(comments=True) == {"comment": "heartbeat"}
        track(system, "Signed Up")
        system.send("/v1/page", {"userId": "u1", "name": "Home"})
        system.send("/v1/track", {"userId": "u1", "event": "Theirs"}, key=other.write_keys[0])
        system.work()
        message = client.next()
        assert message["event"] == "event" and message["id"] == stream_ids(system)[0]
        assert json.loads(message["data"])["name"] == "Signed Up"
        with pytest.raises(queue.Empty):  # neither the page view nor the other product's
            client.next(timeout=1.0)
    finally:
        client.close()
        refused.close()


def test_last_event_id_resumes_with_exactly_the_missed_events(
    system: System, server: LiveServer
) -> None:
    admin = token(system)
    watching = SSEClient(f"{server.url}/api/v1/live", bearer(admin))
    try:
        assert watching.status == 200
        for name in ("one", "two", "three"):
            track(system, name)
        system.work()
        assert json.loads(watching.next()["data"])["name"] == "one"
    finally:
        watching.close()  # and comes back within the viewers key's lifetime
    first, *missed = stream_ids(system)
    client = SSEClient(f"{server.url}/api/v1/live", bearer(admin) | {"Last-Event-ID": first})
    try:
        got = [client.next() for _ in missed]
        assert [m["id"] for m in got] == missed
        assert [json.loads(m["data"])["name"] for m in got] == ["two", "three"]
        track(system, "four")
        system.work()
        after = client.next()
        assert after["id"] == stream_ids(system)[-1]
        assert json.loads(after["data"])["name"] == "four"
        with pytest.raises(queue.Empty):  # nothing twice
            client.next(timeout=1.0)
    finally:
        client.close()
    bad = SSEClient(f"{server.url}/api/v1/live", bearer(admin) | {"Last-Event-ID": "x"})
    try:
        assert bad.status == 200  # not a stream id: live from now on, nothing replayed
        with pytest.raises(queue.Empty):
            bad.next(timeout=1.0)
    finally:
        bad.close()


def test_a_slow_client_is_cut_off_and_never_delays_storage(
    system: System, server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "BUFFER", 8)
    admin = token(system)
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(
        f"GET /api/v1/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n".encode()
    )
    assert b"200 OK" in slow.recv(200)  # then it stops reading
    padding = "x" * 4000
    sent = 0
    started = time.monotonic()
    for batch in range(15):
        body = {
            "batch": [
                {
                    "type": "track",
                    "userId": "u1",
                    "event": f"e{batch}-{i}",
                    "properties": {"p": padding},
                }
                for i in range(100)
            ]
        }
        assert system.send("/v1/batch", body).status_code == 200
        sent += 100
    system.work()
    stored_in = time.monotonic() - started
    assert len(system.events(limit=100_000)) == sent
    assert stored_in < 60, stored_in
    # The server cut the slow client off: reading now reaches the end of the connection,
    # long before the events it was sent.
    slow.settimeout(10)
    received = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        chunk = slow.recv(1 << 16)
        if not chunk:
            break
        received += chunk
    else:
        pytest.fail("the slow client's stream was never cut off")
    slow.close()
    assert received.count(b"event: event") < sent
    # And a live client that keeps up still gets new events.
    fast = SSEClient(f"{server.url}/api/v1/live", bearer(admin))
    try:
        track(system, "after")
        system.work()
        assert json.loads(fast.next()["data"])["name"] == "after"
    finally:
        fast.close()


def test_nothing_is_published_while_nobody_watches(system: System, server: LiveServer) -> None:
    redis = Redis.from_url(system.settings.redis_url or "")
    try:
        track(system, "unwatched")
        system.work()
        assert len(system.events()) == 1
        assert redis.exists(live_viewers_key(system.settings.queue_name)) == 0
        assert stream_ids(system) == []  # no XADD at all
        client = SSEClient(f"{server.url}/api/v1/live", bearer(token(system)))
        try:
            assert client.status == 200
            assert redis.ttl(live_viewers_key(system.settings.queue_name)) > 0
            track(system, "watched")
            system.work()
            assert json.loads(client.next()["data"])["name"] == "watched"
            assert len(stream_ids(system)) == 1
        finally:
            client.close()
    finally:
        redis.close()


def test_viewers_again_after_none_publish_a_gap_that_resets_clients(
    system: System, server: LiveServer
) -> None:
    redis = Redis.from_url(system.settings.redis_url or "")
    queue_name = system.settings.queue_name
    viewers = published.Viewers(queue_name, check_seconds=0)
    row = {"product_id": system.product.id, "type": "track", "name": "x"}
    admin = token(system)
    try:
        assert published.publish(redis, queue_name, [row]) == 1  # while someone watched
        assert not viewers.present(redis) and not viewers.gap_due  # then nobody
        watching = SSEClient(f"{server.url}/api/v1/live", bearer(admin))
        try:
            assert watching.status == 200
            assert viewers.present(redis) and viewers.gap_due  # someone again
            assert published.publish(redis, queue_name, [row], gap=True) == 1
            first, gap_id, event_id = stream_ids(system)
            reset = watching.next()
            assert reset["event"] == "reset" and reset["id"] == gap_id
            assert watching.next()["id"] == event_id
        finally:
            watching.close()
        resumed = SSEClient(f"{server.url}/api/v1/live", bearer(admin) | {"Last-Event-ID": first})
        try:
            reset = resumed.next()
            assert reset["event"] == "reset" and reset["id"] == gap_id
            assert resumed.next()["id"] == event_id
        finally:
            resumed.close()
    finally:
        redis.close()
