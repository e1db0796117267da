"""The hop marker on requests one relay node forwards to another, and the ASGI gate that
checks it (only installed when the relay runs as a node: RELAY_NODE_NAME is set).

A visitor's request for a tunnel another node owns is forwarded once, to the owner, with
`x-tunnelsite-hop: <unix time> <from node> <visitor ip> <visitor port> <signature>`, the
signature an HMAC-SHA256 (key derived from SECRET_KEY) over the rest and the Host header.
The owner believes the visitor address it names (so the app sees the same X-Forwarded-For
as on a direct hit) and never forwards such a request again: a miss is a 404, not a loop.
A marker that does not verify (sent by a visitor, or stale) is dropped like any header.

A marker is believed only on what nodes forward: requests for a tunnel, and (see
`forwarded_api_name`) a client's `GET`/`DELETE` of `/api/tunnels/<name>[/status]`, and
the inspector's `GET .../requests[/<id>]` and `POST .../requests/<id>/replay`. A
registration, `/api/status`, the admin and anything else are never forwarded, so a marker
there is dropped unread: it cannot lend a registration another owner's address. Nor is
any marker believed under the public development key (runrelay refuses to start a node
with it; this covers servers started some other way).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

from django.conf import settings

from relay.asgi_types import ASGIApp, Receive, Scope, Send
from relay.headers import request_target
from relay.protocol import (
    HOP_HEADER,
    HOP_MAX_AGE_S,
    HOP_SCOPE_KEY,
    HOP_SIGNATURE_HEX_CHARS,
    TUNNEL_SCOPE_KEY,
    is_tunnel_client,
    tunnel_name_from_host,
)

# The tunnel API a client may send to any node, which forwards it to the tunnel's owner
# (relay/cluster/node.py `forward_api`): its DELETE (our `lt` frees its name on Ctrl-C) and
# status, and the request inspector's list, detail and replay (relay.protocol.INSPECT_PATH),
# whose captures live on the owner node only; POST only for a replay.
FORWARDED_API = re.compile(
    r"/api/tunnels/([^/]+)(?:/status|/requests(?:/[0-9]+)?|/requests/[0-9]+/(replay))?/?"
)
FORWARDED_API_METHODS = frozenset({"GET", "HEAD", "DELETE"})
FORWARDED_REPLAY_METHODS = frozenset({"POST"})


def _key() -> bytes:
    return hashlib.sha256(b"tunnelsite.hop|" + settings.SECRET_KEY.encode()).digest()


def binding(scope: Scope, host: bytes) -> bytes:
    """What a marker vouches for besides the visitor: this request's method, target and
    Host, so a captured marker cannot be replayed on a different request."""
    method = scope.get("method", "GET").encode()
    return method + b" " + request_target(scope) + b"|" + host


def _signature(key: bytes, fields: str, host: bytes) -> str:
    mac = hmac.new(key, fields.encode() + b"|" + host, hashlib.sha256)
    return mac.hexdigest()[:HOP_SIGNATURE_HEX_CHARS]


def sign(node: str, client: tuple[str, int] | None, host: bytes, now: float | None = None) -> bytes:
    ip, port = client or ("", 0)
    fields = f"{int(now if now is not None else time.time())} {node} {ip or '-'} {port}"
    return f"{fields} {_signature(_key(), fields, host)}".encode()


def forwarded_api_name(scope: Scope) -> str | None:
    """The tunnel named by a tunnel API request nodes forward (lowercase, as names are);
    None for any other request."""
    if scope["type"] != "http":
        return None
    match = FORWARDED_API.fullmatch(scope.get("path") or "")
    if match is None:
        return None
    methods = FORWARDED_REPLAY_METHODS if match.group(2) else FORWARDED_API_METHODS
    return match.group(1).lower() if scope.get("method") in methods else None


def verify(value: bytes, host: bytes, now: float | None = None) -> tuple[str, int] | None:
    """The visitor address a valid marker names; None when it does not verify."""
    if settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY:
        return None  # anyone can sign with a key published in settings.py
    try:
        text = value.decode("ascii")
        stamp, node, ip, port, signature = text.split(" ")
        age = abs((now if now is not None else time.time()) - int(stamp))
        client = ("" if ip == "-" else ip, int(port))
    except (UnicodeDecodeError, ValueError):
        return None
    if age > HOP_MAX_AGE_S:
        return None
    expected = _signature(_key(), f"{stamp} {node} {ip} {port}", host)
    if not hmac.compare_digest(expected, signature):
        return None
    return client


def _from_tunnel_client(scope: Scope) -> bool:
    agents = [v for n, v in scope["headers"] if n == b"user-agent"]
    return len(agents) == 1 and is_tunnel_client(agents[0])


class ClusterGate:
    """Strips hop markers (believing valid ones), answers `GET /healthz` on this node, and
    sends a tunnel API request for another node's tunnel to that node."""

    def __init__(self, app: ASGIApp, status: Any, forward_api: Any = None) -> None:
        self.app = app
        self.status = status  # () -> (http status, JSON-able body); relay/cluster/node.py
        # scale-out: (scope, receive, send) -> True when it sent a tunnel API request to
        # the node that owns the tunnel (relay/cluster/node.py `forward_api`).
        self.forward_api = forward_api
        self.domain = settings.RELAY_DOMAIN.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        marker = host = None
        for name, value in scope["headers"]:
            if name == HOP_HEADER:
                marker = value if marker is None else b""  # two markers: believe neither
            elif name == b"host":
                host = value
        extensions = scope.get("extensions")
        if extensions is not None and TUNNEL_SCOPE_KEY in extensions:
            tunnel = extensions[TUNNEL_SCOPE_KEY]  # relay/edge/channel.py read the one Host
        else:
            tunnel = tunnel_name_from_host(host or b"", self.domain)
        if marker is not None:
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n != HOP_HEADER]
            forwardable = tunnel is not None or forwarded_api_name(scope) is not None
            client = verify(marker, binding(scope, host or b"")) if marker and forwardable else None
            if client is not None:
                scope[HOP_SCOPE_KEY] = True
                scope["client"] = client
        site = scope["type"] == "http" and tunnel is None
        if site and scope["path"] == "/healthz" and not _from_tunnel_client(scope):
            await self._health(send)  # a tunnel client asking for "healthz" is refused
            return
        if (
            site
            and self.forward_api is not None
            and HOP_SCOPE_KEY not in scope  # forwarded once, never again
            and await self.forward_api(scope, receive, send)
        ):
            return
        await self.app(scope, receive, send)

    async def _health(self, send: Send) -> None:
        status, body = self.status()
        data = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
