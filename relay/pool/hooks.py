"""What the registry and the proxies ask of this node's cluster membership (scale-out)."""

from __future__ import annotations

from typing import Any, Protocol

from relay.asgi_types import Receive, Scope, Send
from relay.pool.tunnel import Tunnel


class ClusterHooks(Protocol):
    """What the registry and the proxies ask of this node's cluster membership on a named
    node (relay/cluster/node.py; scale-out). The cluster imports the registry, not this way."""

    advertise_host: str  # the pool address clients of this node are given
    node_url: str  # this node's public base URL: our lt's pool connections (RELAY_NODE_URL)

    def flush_soon(self) -> None: ...

    def tunnel_opened(self, tunnel: Tunnel) -> None: ...

    def tunnel_closed(self, tunnel: Tunnel) -> None: ...

    async def release(
        self, name: str, owner: str, client_id: str = "", takeover: bool = False
    ) -> bool: ...

    def route(self, name: str) -> str | None: ...

    def health(self) -> tuple[int, dict[str, Any]]: ...

    def note_owner(self, message: dict[str, Any]) -> None: ...

    def note_release(self, message: dict[str, Any]) -> int: ...

    async def forward_http(self, scope: Scope, receive: Receive, send: Send, name: str) -> None: ...

    async def forward_websocket(
        self, scope: Scope, receive: Receive, send: Send, name: str
    ) -> None: ...
