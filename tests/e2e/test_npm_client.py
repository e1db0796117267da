"""End to end with the real npm client: visitor -> relay -> `lt` -> local app, and back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid

import pytest
from harness.websocket import run_websocket
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .appdata import CHUNKS, GREETING, pattern


@pytest.fixture(scope="module")
def tunnel(relay, local_app, module_lt_factory):
    """One npm client for the whole module, on the shared relay."""
    return module_lt_factory(relay, local_app.port)


@pytest.fixture
def full_tunnel(tunnel, relay):
    """The module's tunnel once all 10 pool sockets are back (WebSockets use some up)."""
    relay.wait_for_sockets(tunnel.name, 10)
    return tunnel


def test_the_npm_client_prints_a_url_under_the_relay_domain(tunnel, relay):
    assert tunnel.url == f"http://{tunnel.name}.localhost:{relay.port}"


def test_a_plain_get_reaches_the_local_app(full_tunnel, relay):
    answer = relay.get("/hello", name=full_tunnel.name)

    assert answer.status == 200
    assert answer.body == GREETING
    assert answer.header("content-length") == str(len(answer.body))


def test_a_10_mib_post_arrives_intact(full_tunnel, relay):
    body = os.urandom(10 * 1024 * 1024)

    answer = relay.request("POST", "/sha256", name=full_tunnel.name, body=body)

    assert answer.status == 200
    assert answer.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_a_chunked_upload_arrives_intact(full_tunnel, relay):
    parts = [os.urandom(size) for size in (1, 1000, 70000, 5)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"

    answer = relay.request(
        "POST",
        "/sha256",
        name=full_tunnel.name,
        headers=[("Transfer-Encoding", "chunked")],
        body=chunked,
    )

    whole = b"".join(parts)
    assert answer.json() == {"sha256": hashlib.sha256(whole).hexdigest(), "length": len(whole)}


def test_a_5_mib_download_arrives_intact(full_tunnel, relay):
    answer = relay.get("/bytes/5242880", name=full_tunnel.name)

    assert answer.status == 200 and answer.complete
    assert answer.body == pattern(5242880)


def test_a_chunked_response_arrives_whole(full_tunnel, relay):
    answer = relay.get("/chunked", name=full_tunnel.name)

    assert answer.status == 200 and answer.complete
    assert answer.body == CHUNKS


def test_the_first_sse_event_arrives_before_the_stream_ends(full_tunnel, relay, local_app):
    key = uuid.uuid4().hex
    with relay.visitor(full_tunnel.name) as visitor:
        visitor.send(f"GET /sse?key={key} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        received = visitor.read_until(lambda seen: b"data: first\n\n" in seen)

        # The app is still holding the stream open: the event was not held back.
        assert local_app.waiting(key) == 1
        assert b"data: second" not in received
        assert received.startswith(b"HTTP/1.1 200 ")
        assert b"text/event-stream" in received.lower()

        local_app.release(key)
        received = visitor.read_until(lambda seen: seen.endswith(b"0\r\n\r\n"), received)
    assert b"data: second\n\n" in received


# --- WebSockets ------------------------------------------------------------------------------
def test_websocket_text_and_binary_messages_are_echoed(full_tunnel, relay):
    payload = os.urandom(100_000)

    async def session(ws: ClientConnection) -> list[object]:
        await ws.send("héllo, tunnel")
        text = await ws.recv()
        await ws.send(payload)
        data = await ws.recv()
        return [text, data]

    text, data = run_websocket(relay, full_tunnel.name, session)
    assert text == "héllo, tunnel"
    assert data == payload


def test_websocket_pings_are_answered_on_both_legs(full_tunnel, relay):
    async def session(ws: ClientConnection) -> tuple[float, object]:
        pong = await ws.ping(b"visitor-ping")
        latency = await asyncio.wait_for(pong, 5)
        # The app pings the relay over the pool socket and reports the pong it gets.
        await ws.send("ping-app")
        return latency, await ws.recv()

    latency, reply = run_websocket(relay, full_tunnel.name, session)
    assert latency >= 0
    assert reply == "pong received"


def test_a_websocket_closed_by_the_visitor_is_closed_at_the_app_with_its_code(
    full_tunnel, relay, local_app, wait_until
):
    key = uuid.uuid4().hex

    async def session(ws: ClientConnection) -> tuple[int | None, object]:
        await ws.send("before close")
        echoed = await ws.recv()
        await ws.close(code=4002, reason="bye")
        return ws.close_code, echoed

    code, echoed = run_websocket(relay, full_tunnel.name, session, key)
    assert echoed == "before close"
    assert code is not None and code != 1006  # a closing handshake, not a dropped connection
    closed = wait_until(lambda: local_app.get(f"/ws-closed?key={key}").text, 5, "the app close")
    assert closed == "4002"


def test_a_websocket_closed_by_the_app_reaches_the_visitor_with_its_code(full_tunnel, relay):
    async def session(ws: ClientConnection) -> int | None:
        await ws.send("close-app")
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return -1

    assert run_websocket(relay, full_tunnel.name, session) == 4001


def test_pool_sockets_used_by_websockets_are_replaced(full_tunnel, relay):
    async def session(ws: ClientConnection) -> object:
        await ws.send("x")
        return await ws.recv()

    for _ in range(3):
        assert run_websocket(relay, full_tunnel.name, session) == "x"
    relay.wait_for_sockets(full_tunnel.name, 10)
    assert relay.get("/hello", name=full_tunnel.name).status == 200


# --- load ------------------------------------------------------------------------------------
def test_200_concurrent_requests_over_10_sockets_are_all_answered(full_tunnel, relay):
    host = relay.host(full_tunnel.name)

    async def one(i: int) -> tuple[int, bytes, bytes]:
        size = 1000 + i * 37
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        try:
            writer.write(
                f"GET /bytes/{size} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        return size, head, body

    async def main() -> list[tuple[int, bytes, bytes]]:
        async with asyncio.timeout(30):
            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(main())

    statuses = [head.split(b" ", 2)[1] for _, head, _ in results]
    assert statuses == [b"200"] * 200
    wrong = [size for size, _, body in results if body != pattern(size)]
    assert wrong == []
    relay.wait_for_sockets(full_tunnel.name, 10)  # and the pool survived it


# --- keeping a name ----------------------------------------------------------------------------
def test_the_subdomain_comes_back_after_a_client_restart(relay, local_app, lt_factory):
    name = f"keep-{uuid.uuid4().hex[:8]}"
    first = lt_factory(relay, local_app.port, subdomain=name)
    assert first.name == name
    assert relay.get("/hello", name=name).status == 200

    first.stop()
    relay.wait_for_sockets(name, 0)  # offline, but kept for RELAY_GRACE_S
    assert relay.register(name, source="127.0.0.2").status == 409  # and kept for its owner

    second = lt_factory(relay, local_app.port, subdomain=name)
    assert second.url == f"http://{name}.localhost:{relay.port}"
    answer = relay.get("/hello", name=name)
    assert answer.status == 200
    assert answer.body == GREETING


def test_another_ip_cannot_take_a_subdomain_in_use(relay, local_app, lt_factory):
    name = f"mine-{uuid.uuid4().hex[:8]}"
    lt_factory(relay, local_app.port, subdomain=name)

    answer = relay.register(name, source="127.0.0.2")

    assert answer.status == 409
    assert name in answer.json()["message"]
    assert relay.get("/hello", name=name).status == 200  # the owner keeps it


# --- what the local app sees -------------------------------------------------------------------
def test_the_local_app_sees_the_public_host_and_fresh_forwarding_headers(full_tunnel, relay):
    answer = relay.get(
        "/headers?x=1",
        name=full_tunnel.name,
        headers=[
            ("X-Forwarded-For", "6.6.6.6"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
        ],
    )

    seen = answer.json()
    headers = dict(seen["headers"])
    assert seen["target"] == "/headers?x=1"
    assert headers["host"] == relay.host(full_tunnel.name)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == relay.host(full_tunnel.name)
    assert "x-hop" not in headers


def test_head_and_304_through_the_npm_client_keep_the_connection_in_step(full_tunnel, relay):
    with relay.visitor(full_tunnel.name) as visitor:
        head = visitor.request("HEAD", "/bytes/1000")
        not_modified = visitor.request("GET", "/status/304")
        after = visitor.request("GET", "/hello")

    assert (head.status, head.body, head.header("content-length")) == (200, b"", "1000")
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert not_modified.header("etag") == '"v1"'
    assert (after.status, after.body) == (200, GREETING)
