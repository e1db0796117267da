"""A finished request leaves no reference cycle behind: its objects die by refcount alone.

Each visitor request makes a `RelayWebRequest`, its `Flow`, the app's task, its receive
queue and headers. Held in a cycle (request <-> flow, flow -> task -> coroutine -> request),
they wait for a full garbage collection, which under load walks every object of the relay
each second and pauses every visitor for tens of milliseconds. Here the edge (Daphne's
factory with the relay's channel, on the reactor's own loop, not `reactor.run`) serves
requests through a real pool socket to a small app on the other end, with the cyclic
collector off; once the visitor's connection is gone, every request and flow must be gone.
"""

from __future__ import annotations

import daphne.server  # noqa: F401  isort:skip  (installs the asyncio reactor first)

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from harness.pool_listener import connect, pool_listener
from harness.waiting import IO_TIMEOUT_S, wait_until_async
from twisted.internet import defer
from twisted.internet import reactor as twisted_reactor

from relay.edge.routing import HostRouter
from relay.edge.server import RelayHTTPFactory, RelayServer
from relay.pool.registry import get_registry, reset_registry
from relay.proxy.flow import Flow

REQUESTS = 20
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
reactor: Any = twisted_reactor  # zope-typed: untyped at the Twisted boundary


async def _site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("a tunnel's request reached the site")


async def _app_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The tunnel client's side of one pool socket: answer each request head with `ok`."""
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # GETs without a body
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _visit(port: int, host: str, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(f"GET /{_} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert await reader.readexactly(2) == b"ok"
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("collector_off")
def test_requests_through_a_tunnel_leave_nothing_for_the_cyclic_collector() -> None:
    loop = daphne.server.twisted_loop  # the reactor's loop: Twisted's sockets and timers
    requests: list[weakref.ref[Any]] = []
    flows: list[weakref.ref[Flow]] = []

    async def scenario() -> None:
        reset_registry()
        async with pool_listener(2) as tunnel:
            get_registry().tunnels[tunnel.name] = tunnel
            ends = [await connect(tunnel) for _ in range(2)]
            await wait_until_async(lambda: len(tunnel.idle) == 2)
            apps = [asyncio.ensure_future(_app_end(*end)) for end in ends]
            # Not run: the listener below is made here; the endpoint only satisfies Daphne.
            server = RelayServer(HostRouter(site_http=_site), endpoints=["tcp:port=0"])
            server.connections = {}
            create = server.create_application

            def watched(protocol: Any, scope: dict[str, Any]) -> Any:  # a spy, not a double
                queue = create(protocol, scope)
                requests.append(weakref.ref(protocol))
                flows.append(weakref.ref(scope["extensions"]["tunnelsite.flow"]))
                return queue

            server.create_application = watched  # type: ignore[method-assign]
            port = reactor.listenTCP(0, RelayHTTPFactory(server), interface="127.0.0.1")
            try:
                host = f"{tunnel.name}.{settings.RELAY_DOMAIN}"
                await asyncio.wait_for(_visit(port.getHost().port, host, REQUESTS), IO_TIMEOUT_S)
                await wait_until_async(lambda: not server.connections, IO_TIMEOUT_S)
                assert len(requests) == REQUESTS and len(flows) == REQUESTS
                await wait_until_async(
                    lambda: all(ref() is None for ref in requests + flows),
                    IO_TIMEOUT_S,
                    "every finished request and flow to be freed by refcount alone",
                )
            finally:
                await defer.maybeDeferred(port.stopListening).asFuture(loop)
                for app in apps:
                    app.cancel()
                get_registry().tunnels.pop(tunnel.name, None)
                reset_registry()

    loop.run_until_complete(scenario())
