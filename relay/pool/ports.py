"""A tunnel's pool listener: on an ephemeral port the system picks, or on a port of
RELAY_POOL_PORTS.

From a range: a few random ports of it first (cheap while it is mostly free), then every
port not held by this relay in a random order: each free port is tried at most once more,
so a nearly full range of any size is searched to the end.
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import Callable, Iterator
from typing import Any

from relay.pool.errors import RegistrationError
from relay.pool.socket import PoolSocket
from relay.pool.tunnel import Tunnel
from relay.protocol import POOL_LISTEN_BACKLOG, QUICK_PORT_TRIES, RETRY_AFTER_FULL_S


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
    loop = asyncio.get_running_loop()
    for port in port_candidates(first, last, held):
        try:
            return await loop.create_server(factory, bind, port, backlog=POOL_LISTEN_BACKLOG)
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
    loop = asyncio.get_running_loop()
    bind = settings.RELAY_POOL_BIND
    max_head = settings.RELAY_MAX_HEADER_BYTES

    def factory() -> PoolSocket:
        return PoolSocket(tunnel, max_head)

    ports = settings.RELAY_POOL_PORTS
    if ports is None:
        server = await loop.create_server(factory, bind, 0, backlog=POOL_LISTEN_BACKLOG)
        if server.sockets[0].getsockname()[1] != avoid_port:
            return server
        try:  # the port just given up came back: ask again while holding it
            return await loop.create_server(factory, bind, 0, backlog=POOL_LISTEN_BACKLOG)
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
