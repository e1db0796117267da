"""Route by Host: `<name>.<domain>` goes to the tunnel, every other host to Django.

The Host of an HTTP request was read once already, by relay/edge/channel.py, which left
the tunnel name in the scope (protocol.TUNNEL_SCOPE_KEY); a WebSocket's is read here.

A request another node forwarded here (relay/cluster/hop.py marked its scope) is left out
of the access log: the node the visitor reached writes its one line."""

from __future__ import annotations

from django.conf import settings

from relay import access_log
from relay.asgi_types import ASGIApp, Receive, Scope, Send
from relay.errors import send_error
from relay.protocol import HOP_SCOPE_KEY, TUNNEL_SCOPE_KEY, tunnel_name_from_host
from relay.proxy.http import proxy_http
from relay.proxy.websocket import proxy_websocket


class HostRouter:
    def __init__(self, site_http: ASGIApp, site_websocket: ASGIApp | None = None) -> None:
        self.site_http = site_http
        self.site_websocket = site_websocket
        self.domain = settings.RELAY_DOMAIN.encode()
        self.access_log = access_log.ENABLED  # RELAY_ACCESS_LOG, read once (relay/access_log.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.site_http(scope, receive, send)
            return
        extensions = scope.get("extensions")
        if extensions is not None and TUNNEL_SCOPE_KEY in extensions:
            name = extensions[TUNNEL_SCOPE_KEY]  # relay/edge/channel.py read the one Host
        else:
            hosts = [value for name, value in scope["headers"] if name == b"host"]
            if len(hosts) != 1:
                if kind == "http":
                    problem = "is required" if not hosts else "must appear only once"
                    await send_error(scope, send, 400, f"The Host header {problem}.")
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
            name = tunnel_name_from_host(hosts[0], self.domain)
        if name is not None:
            if self.access_log and HOP_SCOPE_KEY not in scope:
                wrap = access_log.http if kind == "http" else access_log.websocket
                await wrap(
                    proxy_http if kind == "http" else proxy_websocket, scope, receive, send, name
                )
            elif kind == "http":
                await proxy_http(scope, receive, send, name)
            else:
                await proxy_websocket(scope, receive, send, name)
        elif kind == "http":
            await self.site_http(scope, receive, send)
        elif self.site_websocket is not None:
            await self.site_websocket(scope, receive, send)
        else:
            await receive()
            await send({"type": "websocket.close", "code": 1008})
