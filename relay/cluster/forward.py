"""Forwarding to the node that owns a tunnel (scale-out): a visitor's request or WebSocket
after a local miss (relay/proxy/http.py and relay/proxy/websocket.py), a client's tunnel API
call sent to any node (`forward_api`), and the node's /healthz answer (`health`).
"""

from __future__ import annotations

from typing import Any, Protocol

from django.conf import settings as django_settings

from relay.asgi_types import Receive, Scope, Send
from relay.cluster import peer_proxy
from relay.cluster.hop import forwarded_api_name
from relay.cluster.peer_pool import PeerPool
from relay.errors import send_error
from relay.pool.registry import get_registry
from relay.stats import STATS


class Counting(Protocol):
    """The registry's count of requests in flight (a drain waits for forwarded ones too)."""

    def request_started(self) -> None: ...

    def request_finished(self) -> None: ...


class ForwardHost(Protocol):
    """What forwarding needs of its cluster: the registry's in-flight count, this node's
    name, the peer connections, and the directory to look a name up in (and forget it)."""

    @property
    def registry(self) -> Counting: ...

    @property
    def node(self) -> str: ...

    @property
    def peers(self) -> PeerPool: ...

    def route(self, name: str) -> str | None: ...

    def forget(self, name: str) -> None: ...


class Forwarder:
    """Owned by relay.cluster.node.Cluster: forwards to the owner node and counts the
    requests it forwarded (the heartbeat reports them)."""

    def __init__(self, host: ForwardHost) -> None:
        self.host = host
        self.forwarded = 0

    async def forward_http(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        host = self.host
        address = host.route(name)
        if address is None:
            await send_error(scope, send, 404, f"There is no tunnel called {name!r} on this relay.")
            return
        self.forwarded += 1
        STATS.forwarded_http += 1
        host.registry.request_started()
        try:
            await peer_proxy.forward_http(
                host.peers, host.node, address, scope, receive, send, lambda: host.forget(name)
            )
        finally:
            host.registry.request_finished()

    async def forward_websocket(
        self, scope: Scope, receive: Receive, send: Send, name: str
    ) -> None:
        host = self.host
        address = host.route(name)
        if address is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        self.forwarded += 1
        STATS.forwarded_websockets += 1
        host.registry.request_started()
        try:
            await peer_proxy.forward_websocket(host.peers, host.node, address, scope, receive, send)
        finally:
            host.registry.request_finished()


async def forward_api(scope: Scope, receive: Receive, send: Send) -> bool:
    """Forward `/api/tunnels/<name>[/status]` to the node that owns `name` when that is
    another node; False (the caller serves it here) otherwise. The owner applies its own
    owner check: the hop marker tells it the client's address, the token goes along."""
    name = forwarded_api_name(scope)  # what the owner believes a hop marker on
    registry = get_registry()
    cluster = registry.cluster
    if name is None or cluster is None or registry.get(name) is not None:
        return False
    if cluster.route(name) is None:
        return False
    await cluster.forward_http(scope, receive, send, name)
    return True


def health() -> tuple[int, dict[str, Any]]:
    """For relay/cluster/hop.py's gate: this node's /healthz answer."""
    cluster = get_registry().cluster
    if cluster is None:
        return 503, {"node": django_settings.RELAY_NODE_NAME, "tunnels": 0, "draining": False}
    return cluster.health()
