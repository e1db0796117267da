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
import socket
import weakref
from collections import Counter
from collections.abc import Iterator
from tempfile import SpooledTemporaryFile
from typing import Any

import pytest
from django.conf import settings
from django.contrib.messages.storage.base import BaseStorage
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from harness.pool_listener import connect, pool_listener
from harness.waiting import IO_TIMEOUT_S, wait_until_async
from twisted.internet import defer
from twisted.internet import reactor as twisted_reactor
from twisted.internet.tcp import Server as TcpServer

from relay import asgi as relay_asgi
from relay.edge.routing import HostRouter
from relay.edge.server import RelayHTTPFactory, RelayServer, RelayWebRequest, StreamingReceive
from relay.pool.registry import get_registry, reset_registry
from relay.proxy.flow import Flow
from tunnelsite.loop_middleware import SiteHandler

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


# Requests to the bare domain's Django, through the relay's whole application (the edge,
# relay/site_call.py, tunnelsite/loop_middleware.py's handler and Django's middlewares).
# The API's answers and registrations make no cycle of their own; pages do (a template's
# RequestContext, a form's bound fields, the exception of a 403 or 404 page): those are
# Django's, but none may hold the request's connection, its flow, its session or its body.
API_REQUESTS = (
    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /?new HTTP/1.1\r\nHost: localhost\r\n\r\n",
)
PAGE_REQUESTS = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\ncontent-length: 0\r\n\r\n",
    b"GET /no/such/page HTTP/1.1\r\nHost: localhost\r\n\r\n",
)
# What a finished request to the site must never leave for the collector: the relay's
# objects of the request and its connection, Django's request state.
HELD_BY_A_REQUEST = (
    RelayWebRequest,
    Flow,
    StreamingReceive,
    TcpServer,
    SessionBase,
    BaseStorage,
    SpooledTemporaryFile,
    asyncio.Task,
)


async def _ask(port: int, request: bytes) -> bytes:
    """One request on a connection of its own; the status line of its answer. A bare
    socket: asyncio's streams would leave their own transports for the collector."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, request)
        answer = b""
        while b"\r\n" not in answer:
            more = await loop.sock_recv(sock, 4096)
            assert more, f"the connection closed after {answer!r}"
            answer += more
        return answer.split(b"\r\n", 1)[0]


def _garbage() -> list[Any]:
    """What a full collection finds unreachable now: kept, not freed (DEBUG_SAVEALL); the
    caller empties gc.garbage."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    found = list(gc.garbage)
    gc.garbage.clear()
    return found


def _kinds(objects: list[Any]) -> list[tuple[str, int]]:
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects).most_common(12)


def _site_garbage(requests: tuple[bytes, ...]) -> tuple[list[bytes], list[Any]]:
    """Each request, once to warm Django's caches (templates, URL resolvers, lazy imports),
    then three times more: the status lines of the first round, and what the cyclic
    collector finds after the last three."""
    loop = daphne.server.twisted_loop
    application = relay_asgi.application(SiteHandler())

    async def scenario() -> tuple[list[bytes], list[Any]]:
        reset_registry()
        server = RelayServer(application, endpoints=["tcp:port=0"])
        server.connections = {}
        port = reactor.listenTCP(0, RelayHTTPFactory(server), interface="127.0.0.1")
        public = port.getHost().port
        try:
            first = [await asyncio.wait_for(_ask(public, r), IO_TIMEOUT_S) for r in requests]
            await wait_until_async(lambda: not server.connections, IO_TIMEOUT_S)
            _garbage()  # start from nothing
            for _ in range(3):
                for request in requests:
                    await asyncio.wait_for(_ask(public, request), IO_TIMEOUT_S)
            await wait_until_async(lambda: not server.connections, IO_TIMEOUT_S)
            return first, _garbage()
        finally:
            await defer.maybeDeferred(port.stopListening).asFuture(loop)
            await get_registry().shutdown("test over")
            reset_registry()

    return loop.run_until_complete(scenario())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("collector_off")
def test_the_sites_api_and_registrations_leave_nothing_for_the_cyclic_collector() -> None:
    statuses, garbage = _site_garbage(API_REQUESTS)
    assert statuses == [b"HTTP/1.1 200 OK"] * 3
    assert not garbage, f"finished requests to the site left cycles: {_kinds(garbage)}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("collector_off")
def test_no_page_leaves_its_request_or_connection_for_the_cyclic_collector() -> None:
    statuses, garbage = _site_garbage(PAGE_REQUESTS)
    codes = [line.split(b" ")[1] for line in statuses]
    assert codes == [b"200", b"200", b"403", b"404"], statuses  # each answered by its view
    held = [o for o in garbage if isinstance(o, HELD_BY_A_REQUEST)]
    # A request in a page's cycle (a template's context holds it) has let go of the rest.
    holding = [o for o in garbage if isinstance(o, HttpRequest) and vars(o)]
    assert not held and not holding, (
        f"a finished page left its request's state for the collector: {_kinds(held)}, "
        f"{len(holding)} requests still holding theirs"
    )
