"""A tunnel's pool listener: on an ephemeral port the system picks, or on a port of
RELAY_POOL_PORTS.

From a range: a few random ports of it first (cheap while it is mostly free), then every
port not held by this relay in a random order: each free port is tried at most once more,
so a nearly full range of any size is searched to the end.

A wildcard IPv6 bind ("::") listens on both families, as Twisted's public listener does:
asyncio's create_server would set IPV6_V6ONLY and refuse every IPv4 client (`serve`).

A listener is made in an empty context of its own (`serve`): the loop keeps the context it
is created in for every callback of its connections, for as long as it listens, and the
registration's context holds that whole request (its Django request, asgiref's executor and
locals): tens of KB per tunnel, kept alive by an idle tunnel for hours.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

from relay.pool.errors import RegistrationError
from relay.pool.tunnel import Tunnel
from relay.protocol import POOL_LISTEN_BACKLOG, QUICK_PORT_TRIES, RETRY_AFTER_FULL_S
from relay.tasks import background

WILDCARD_IPV6 = ("::", "[::]")


def dual_stack_socket(port: int) -> socket.socket:
    """A socket bound to [::]:port with IPV6_V6ONLY off, so IPv4 clients (as ::ffff:a.b.c.d)
    reach it too; OSError (EADDRINUSE, ...) as bind raises it."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    factory: Callable[[], asyncio.BaseProtocol], bind: str, port: int, *, backlog: int
) -> asyncio.Server:
    """A listener on bind:port (0: one the system picks): dual stack for a wildcard IPv6
    bind, else asyncio's; OSError (EADDRINUSE, EACCES, ...) as create_server raises it.
    Made in an empty context (the module's docstring says why); a listener made just as
    its caller is cancelled is closed, never left open."""
    loop = asyncio.get_running_loop()
    opening = background(_serve(loop, factory, bind, port, backlog))
    try:
        # Shielded: a cancelled caller must not cancel the opening half-way (asyncio's
        # create_server awaits after it starts listening, and a cancel there leaks the socket).
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_if_made)
        raise


def _close_if_made(opening: asyncio.Task[asyncio.Server]) -> None:
    """A listener its caller no longer waits for: closed once it is made."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def _serve(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    bind: str,
    port: int,
    backlog: int,
) -> asyncio.Server:
    if bind in WILDCARD_IPV6:
        sock = dual_stack_socket(port)
        try:
            return await loop.create_server(factory, sock=sock, backlog=backlog)
        except BaseException:
            sock.close()
            raise
    return await loop.create_server(factory, bind, port, backlog=backlog)


def port_candidates(first: int, last: int, held: set[int]) -> Iterator[int]:
    """A few random ports of the range first (cheap while it is mostly free), then every
    port not held by this relay in a random order: each free port is tried at most once
    more, so a nearly full range of any size is searched to the end."""
    size = last - first + 1
    tried: set[int] = set()
    for _ in range(min(QUICK_PORT_TRIES, size)):
        port = random.randint(first, last)
        if port not in held and port not in tried:
            tried.add(port)
            yield port
    rest = [port for port in range(first, last + 1) if port not in held and port not in tried]
    random.shuffle(rest)
    yield from rest


async def open_in_range(
    factory: Callable[[], asyncio.Protocol], bind: str, first: int, last: int, held: set[int]
) -> asyncio.Server | None:
    """A listener on a free port of first-last not in `held`; None when every port is taken."""
    for port in port_candidates(first, last, held):
        try:
            return await serve(factory, bind, port, backlog=POOL_LISTEN_BACKLOG)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    return None


async def listen(
    tunnel: Tunnel, settings: Any, tunnels: dict[str, Tunnel], avoid_port: int = 0
) -> asyncio.Server:
    """`tunnel`'s pool listener, never on `avoid_port` (the port a takeover gave up);
    RegistrationError when every port of RELAY_POOL_PORTS is taken. `tunnels` are the
    registry's, whose ports this relay holds."""
    bind = settings.RELAY_POOL_BIND
    factory = tunnel.new_socket  # one bound method per listener (a closure made four objects)
    ports = settings.RELAY_POOL_PORTS
    if ports is None:
        server = await serve(factory, bind, 0, backlog=POOL_LISTEN_BACKLOG)
        if server.sockets[0].getsockname()[1] != avoid_port:
            return server
        try:  # the port just given up came back: ask again while holding it
            return await serve(factory, bind, 0, backlog=POOL_LISTEN_BACKLOG)
        finally:
            server.close()
    # Every port of the range this relay does not hold, in a random order, each tried
    # once: other processes may hold some, and a free one is found whenever one exists.
    first, last = ports
    held = {t.port for t in tunnels.values() if t.port}
    held.add(avoid_port)
    listener = await open_in_range(factory, bind, first, last, held)
    if listener is None:
        raise RegistrationError(
            503,
            f"All {last - first + 1} pool ports of this relay (RELAY_POOL_PORTS={first}-{last})"
            " are in use; try again later (operator: widen the range).",
            retry_after=RETRY_AFTER_FULL_S,
        )
    return listener
