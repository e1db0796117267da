"""A TCP tunnel's public port (`lt tcp`): its listener on a port of RELAY_TCP_PORTS.

The port asked for (`--remote-port`, one the site found reserved for its user) is that port
or a clear refusal; otherwise the port the site says this name had (`preferred`: a relay
restart gives every tunnel its port back) when it is free, else a random free port of the
range, never one this relay's tunnels hold nor one the site keeps from this tunnel
(`reserved`: reserved ports, and other owners' recent ports), searched like the pool listener's
(relay/pool/ports.py's `port_candidates`: each free port tried at most once more, so a
nearly full range of any size is searched to the end).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from relay.pool.errors import RegistrationError
from relay.pool.ports import port_candidates, serve
from relay.pool.tcp_side import TcpSide
from relay.pool.tcp_visitor import TcpVisitor
from relay.pool.tunnel import Tunnel
from relay.protocol import RETRY_AFTER_FULL_S, TCP_LISTEN_BACKLOG

logger = logging.getLogger(__name__)

OFF_MESSAGE = "This relay does not offer TCP tunnels (its operator has not set RELAY_TCP_PORTS)."
_REFUSED = (errno.EADDRINUSE, errno.EACCES)  # another program has it, or it is privileged


class TcpWanted(Protocol):
    """What a TCP registration asks for (relay.face.TcpAsk fits it)."""

    @property
    def port(self) -> int: ...  # 0: any free port

    @property
    def reserved(self) -> frozenset[int]: ...  # never handed out to this tunnel

    @property
    def max_live(self) -> int: ...  # the owner's live TCP tunnels here (0: no limit)

    @property
    def preferred(self) -> int: ...  # tried first when free (the port this name had; 0: none)


def refuse_if_off(settings: Any) -> None:
    """403 when this relay offers no TCP tunnels (the site checks first; this is the
    defence in depth)."""
    if settings.RELAY_TCP_PORTS is None:
        raise RegistrationError(403, OFF_MESSAGE)


def held_ports(tunnels: Iterable[Tunnel]) -> set[int]:
    """The TCP ports this relay's tunnels hold (live or in their grace period)."""
    return {t.tcp.port for t in tunnels if t.tcp is not None and t.tcp.port}


def refuse_past_limit(tunnels: Iterable[Tunnel], owner: str, limit: int) -> None:
    """429 when `owner` already has `limit` live TCP tunnels here (0: no limit)."""
    if not limit:
        return
    live = sum(1 for t in tunnels if t.tcp is not None and t.owner == owner)
    if live >= limit:
        plural = "s" if live != 1 else ""
        raise RegistrationError(
            429,
            f"You already have {live} live TCP tunnel{plural}, the most your plan allows. "
            "Close one (stop its lt) first.",
        )


async def open_side(
    tunnel: Tunnel, settings: Any, tunnels: Iterable[Tunnel], wanted: TcpWanted
) -> TcpSide:
    """`tunnel`'s public TCP side: a listener on the asked port or a free one of the range;
    RegistrationError (409, 503) when there is none. `tunnels` are the registry's."""
    refuse_if_off(settings)
    first, last = settings.RELAY_TCP_PORTS
    bind = settings.RELAY_TCP_BIND
    held = held_ports(tunnels)

    async def listen(port: int) -> asyncio.Server:
        try:  # a wildcard IPv6 bind is dual stack, like the public port
            return await serve(lambda: TcpVisitor(tunnel), bind, port, backlog=TCP_LISTEN_BACKLOG)
        except OSError as exc:
            if exc.errno in _REFUSED:
                raise
            # The operator's settings (an address this host does not have), not the client's
            logger.warning("cannot listen on %s port %d for TCP tunnels: %s", bind, port, exc)
            raise RegistrationError(
                503,
                f"This relay cannot listen for TCP tunnels on {bind} (RELAY_TCP_BIND): "
                f"{exc.strerror or exc}.",
            ) from None

    if wanted.port:
        port = wanted.port
        if not first <= port <= last:
            raise RegistrationError(
                400,
                f"Port {port} is not one of this relay's TCP ports "
                f"(RELAY_TCP_PORTS={first}-{last}).",
            )
        if port in held:
            raise RegistrationError(409, f"Port {port} is in use by another tunnel.")
        if port in wanted.reserved:
            raise RegistrationError(409, f"Port {port} is reserved; ask for another.")
        try:
            server = await listen(port)
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise
            raise RegistrationError(
                409, f"Port {port} is taken on this relay by another program; ask for another."
            ) from None
        return TcpSide(port, server)
    avoid = held | wanted.reserved
    preferred = wanted.preferred
    if preferred and first <= preferred <= last and preferred not in avoid:
        try:  # the port this name had (a relay restart): given back when it is free
            return TcpSide(preferred, await listen(preferred))
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise
        avoid.add(preferred)
    for port in port_candidates(first, last, avoid):
        try:
            return TcpSide(port, await listen(port))
        except OSError as exc:
            if exc.errno not in _REFUSED:
                raise
    raise RegistrationError(
        503,
        f"All {last - first + 1} TCP ports of this relay (RELAY_TCP_PORTS={first}-{last}) "
        "are in use; try again later (operator: widen the range).",
        retry_after=RETRY_AFTER_FULL_S,
    )
