"""The figures of a live tunnel as the admin's dashboard and the account page both show them
(its address, client, sockets and traffic), from the relay's view of it or a node's row.
A TCP tunnel's row has its tcp:// address and its visitor connections open now too."""

from __future__ import annotations

from typing import Any, Protocol

from relay.face import Counts
from tunnels import addresses


class LiveFigures(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def sockets(self) -> int: ...
    @property
    def max_sockets(self) -> int: ...
    @property
    def counts(self) -> Counts: ...
    @property
    def tcp_port(self) -> int: ...
    @property
    def tcp_connections(self) -> int: ...


def figures(tunnel: LiveFigures, port: int) -> dict[str, Any]:
    """`port`: addresses.public_port of the request (read once for the whole list)."""
    return {
        "name": tunnel.name,
        "url": addresses.tunnel_url(tunnel.name, port),
        "client_ip": tunnel.client_ip,
        "sockets": tunnel.sockets,
        "max_sockets": tunnel.max_sockets,
        "requests": tunnel.counts.requests,
        "bytes_in": tunnel.counts.bytes_in,
        "bytes_out": tunnel.counts.bytes_out,
        # A TCP tunnel (`lt tcp`): its address for visitors ("" for an HTTP tunnel) and its
        # visitor connections open now (on a cluster, another node's tunnel shows 0).
        "tcp_url": addresses.tcp_url(tunnel.tcp_port) if tunnel.tcp_port else "",
        "tcp_connections": tunnel.tcp_connections,
    }
