"""HTTP visitors (and WebSockets) of a TCP tunnel's host: answered 404 by the relay, which
says where to connect, and never handed one of its pool connections (they carry frames).

The tunnel holds a real pool connection (our lt's end is a socket here): after the visitor
is answered, that connection is still idle and not one byte reached it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.test import override_settings
from harness.accounts import upgraded_pool_connection
from harness.waiting import wait_until_async

from relay.pool.access import Access, VisitorRules
from relay.pool.registry import get_registry, reset_registry
from relay.pool.tcp_side import TcpSide
from relay.pool.tunnel import Tunnel
from relay.protocol import HOP_SCOPE_KEY
from relay.proxy.http import proxy_http
from relay.proxy.websocket import proxy_websocket

NAME = "db"
PORT = 20345  # never listened on: the answer only names it
WAIT_S = 5.0
ANSWER = f"db is a TCP tunnel: connect to tcp://tcp.example.test:{PORT} with a TCP client."


def scope(kind: str = "http", accept: bytes = b"application/json") -> dict[str, Any]:
    return {
        "type": kind,
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", f"{NAME}.localhost".encode()), (b"accept", accept)],
        "client": ("192.0.2.1", 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
    }


@asynccontextmanager
async def tcp_tunnel(
    rules: VisitorRules | None = None,
) -> AsyncIterator[tuple[Tunnel, asyncio.StreamReader]]:
    """A live TCP tunnel in a fresh registry with one idle pool connection; our lt's end."""
    reset_registry()
    registry = get_registry()
    tunnel = Tunnel(
        name=NAME, owner="user:7", client_ip="127.0.0.1", max_conn_count=10, registry=registry
    )
    tunnel.tcp = TcpSide(PORT)
    if rules is not None:
        tunnel.access = Access(rules, tunnel.owner)
    registry.tunnels[NAME] = tunnel
    reader, writer = await upgraded_pool_connection(tunnel)
    try:
        await wait_until_async(lambda: len(tunnel.idle) == 1, WAIT_S, "the pool connection")
        yield tunnel, reader
    finally:
        writer.close()
        del registry.tunnels[NAME]
        tunnel.close("test over")
        reset_registry()


async def untouched(tunnel: Tunnel, reader: asyncio.StreamReader) -> None:
    assert len(tunnel.idle) == 1 and not tunnel.idle[0].busy
    assert tunnel.requests == 0 and get_registry().in_flight == 0
    try:  # not one byte went to our lt
        data = await asyncio.wait_for(reader.read(1), 0.2)
    except TimeoutError:
        return
    raise AssertionError(f"the pool connection was sent {data!r}")


async def visit(http_scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(proxy_http(http_scope, receive, send, NAME), WAIT_S)
    return sent


@override_settings(RELAY_TCP_HOST="tcp.example.test")
def test_an_http_visitor_is_told_to_use_a_tcp_client_and_no_pool_socket_is_touched() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as (tunnel, reader):
            sent = await visit(scope())
            assert sent[0]["status"] == 404
            assert json.loads(sent[1]["body"]) == {"message": ANSWER}
            forwarded = {**scope(), HOP_SCOPE_KEY: True}  # from another node (scale-out)
            hop = await visit(forwarded)
            assert hop[0]["status"] == 404
            assert json.loads(hop[1]["body"]) == {"message": ANSWER}
            page = await visit(scope(accept=b"text/html"))
            assert page[0]["status"] == 404 and ANSWER.encode() in page[1]["body"]
            await untouched(tunnel, reader)

    asyncio.run(scenario())


@override_settings(RELAY_TCP_HOST="tcp.example.test")
def test_the_answer_comes_before_the_tunnels_visitor_rules() -> None:
    """A password on the TCP tunnel is not asked for over HTTP: there is nothing to reach."""

    async def scenario() -> None:
        async with tcp_tunnel(VisitorRules(basic_auth=("ann:s3cret",))) as (tunnel, reader):
            sent = await visit(scope())
            assert sent[0]["status"] == 404
            assert json.loads(sent[1]["body"]) == {"message": ANSWER}
            await untouched(tunnel, reader)

    asyncio.run(scenario())


def test_a_websocket_visitor_is_refused_and_no_pool_socket_is_touched() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as (tunnel, reader):
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "websocket.connect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await asyncio.wait_for(proxy_websocket(scope("websocket"), receive, send, NAME), WAIT_S)
            assert sent == [{"type": "websocket.close", "code": 1008}]  # a 404's close code
            await untouched(tunnel, reader)

    asyncio.run(scenario())
