"""Forwarding to the node that owns a tunnel (scale-out): a visitor's request or WebSocket
after a local miss (relay/proxy/http.py and relay/proxy/websocket.py), a client's tunnel API
call sent to any node (`forward_api`), and the node's /healthz answer (`health`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings

from relay.asgi_types import Receive, Scope, Send
from relay.cluster import peer_proxy
from relay.cluster.hop import forwarded_api_name
from relay.cluster.peer_pool import PeerPool
from relay.errors import send_error
from relay.pool.registry import Registry, get_registry


class Forwarding:
    """A part of relay.cluster.node.Cluster: the state below is the cluster's."""

    registry: Registry
    node: str
    peers: PeerPool
    forwarded: int
    route: Callable[[str], str | None]
    forget: Callable[[str], None]

    async def forward_http(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        address = self.route(name)
        if address is None:
            await send_error(scope, send, 404, f"There is no tunnel called {name!r} on this relay.")
            return
        self.forwarded += 1
        self.registry.request_started()
        try:
            await peer_proxy.forward_http(
                self.peers, self.node, address, scope, receive, send, lambda: self.forget(name)
            )
        finally:
            self.registry.request_finished()

    async def forward_websocket(
        self, scope: Scope, receive: Receive, send: Send, name: str
    ) -> None:
        address = self.route(name)
        if address is None:
            await send({"type": "websocket.close", "code": 1008})
            return
        self.forwarded += 1
        self.registry.request_started()
        try:
            await peer_proxy.forward_websocket(self.peers, self.node, address, scope, receive, send)
        finally:
            self.registry.request_finished()


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
