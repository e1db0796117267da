"""Pool ports from RELAY_POOL_PORTS: which to try, in which order, until one listens.

A few random ports of the range first (cheap while it is mostly free), then every port not
held by this relay in a random order: each free port is tried at most once more, so a
nearly full range of any size is searched to the end. Without a range the system picks an
ephemeral port (relay/pool/registry.py).
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import Callable, Iterator

from relay.protocol import POOL_LISTEN_BACKLOG, QUICK_PORT_TRIES


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
