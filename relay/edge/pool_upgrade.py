"""Our lt's pool connections over the relay's own port (the wire contract: relay/protocol.py,
"pool connections over the relay's own port").

`GET /api/tunnels/<id>/pool` with `Upgrade: tunnelsite-pool` on the relay's own host (on a
tunnel's Host such a request is the tunnel app's) is answered here, in the Twisted layer
before Daphne and Django, against this process's registry on the same event loop: the tunnel
lives here, the secret is its (compared in constant time), and it has fewer than
max_conn_count connections (or an idle one from another address it may replace: the client
moved). Then `101`, and the connection is handed to
relay.pool.upgraded.UpgradedPool, which drives a PoolSocket as a raw pool socket would.
Refusals: 401 (no or a wrong secret), 404 (no such tunnel on this node), 429 (full), each a
JSON {"message"} with `Connection: close`; nothing attaches.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings
from twisted.protocols.policies import ProtocolWrapper

from relay.edge.idle import IdleTimer
from relay.headers import client_ip
from relay.pool.registry import get_registry
from relay.pool.upgraded import UpgradedPool
from relay.protocol import ERROR_HEADER, POOL_PATH, POOL_SECRET_HEADER, POOL_UPGRADE

logger = logging.getLogger(__name__)

_PATH = re.compile(
    re.escape(POOL_PATH).replace(re.escape("{name}"), "([^/]+)").encode(), re.IGNORECASE
)
_UPGRADE = POOL_UPGRADE.encode()
_SECRET = POOL_SECRET_HEADER.encode()


def is_pool_upgrade(request: Any) -> bool:
    """Whether `request` (a relay/edge/server.py RelayWebRequest, its head read) asks for a
    pool connection: our upgrade, on the relay's own host (one Host, naming no tunnel)."""
    upgrade = request.requestHeaders.getRawHeaders(b"upgrade")
    if not upgrade or upgrade[0].strip().lower() != _UPGRADE:
        return False
    if not request.relay_one_host or request.relay_tunnel is not None:
        return False  # no single Host, or a tunnel's: the request belongs to its app
    return request.method == b"GET" and _PATH.fullmatch(request.path) is not None


def _refuse(request: Any, status: int, message: str) -> None:
    body = json.dumps({"message": message}).encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", str(len(body)).encode())
    request.setHeader(b"connection", b"close")
    request.setHeader(ERROR_HEADER, str(status).encode())
    channel = request.channel
    request.write(body)
    request.finish()
    channel.loseConnection()  # Twisted keeps an HTTP/1.1 connection open otherwise
    _forget(request)


def _forget(request: Any) -> None:
    """Drop Daphne's entry for the request (made when its head arrived): Daphne reaps entries
    only through their application, and these requests never get one, so each upgrade or
    refusal would otherwise stay in `connections` (with its channel) for the process's life."""
    request.server.connections.pop(request, None)


def upgrade(request: Any) -> None:
    """Answer a pool upgrade (`is_pool_upgrade`): hand the connection over, or refuse."""
    match = _PATH.fullmatch(request.path)
    name = match.group(1).decode("ascii", "replace") if match else ""
    registry = get_registry()
    tunnel = registry.get(name)
    if tunnel is None or tunnel.closed:
        where = "on this relay" if registry.cluster is None else "on this node"
        _refuse(request, 404, f"There is no tunnel called {name!r} {where}; register again.")
        return
    secrets = request.requestHeaders.getRawHeaders(_SECRET) or []
    secret = secrets[0].decode("ascii", "replace").strip() if len(secrets) == 1 else ""
    if not tunnel.secret_matches(secret):
        _refuse(
            request,
            401,
            f"This pool connection's secret is not the tunnel {name!r}'s (missing, wrong, or "
            "of an older registration); register again.",
        )
        return
    address = _client_address(request)
    if len(tunnel.connections) >= tunnel.max_conn_count and not _replace_moved(tunnel, address):
        _refuse(
            request,
            429,
            f"The tunnel {name!r} already has the {tunnel.max_conn_count} pool connections "
            "it may open.",
        )
        return
    _hand_over(request, UpgradedPool(tunnel, settings.RELAY_MAX_HEADER_BYTES, address))


def _client_address(request: Any) -> str:
    """The client's address: the peer, or the one a trusted proxy in front names (as for
    visitors, relay.headers.client_ip), so a move is seen behind nginx or Caddy too."""
    peer = request.getClientAddress()
    forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
    scope = {
        "client": (str(getattr(peer, "host", "")), getattr(peer, "port", 0)),
        "headers": [(b"x-forwarded-for", value) for value in forwarded],
    }
    return client_ip(scope)


def _replace_moved(tunnel: Any, address: str) -> bool:
    """Room for a connection with the tunnel's secret from a new address when all
    max_conn_count are up: its client moved (a laptop from Wi-Fi to tethering), and the
    connections from its old address are dead, though the relay would count them as live
    until TCP keepalive gives up (~30 s). Close the idle one from another address that has
    waited longest; none: refuse (429). From the same address nothing is replaced."""
    for conn in tunnel.idle:
        if conn.peer_ip != address:
            tunnel.detach(conn)
            conn.abort()
            logger.info(
                "tunnel %s: a pool connection from a new address replaced an old one", tunnel.name
            )
            return True
    return False


def _hand_over(request: Any, protocol: UpgradedPool) -> None:
    """`101`, then the connection is `protocol`'s, as Daphne hands one to a WebSocket: the
    HTTP channel (its head deadline, Twisted's idle timeout) lets go of it, and bytes the
    client sent after the head reach `protocol` (relay/edge/channel.py's rawDataReceived)."""
    channel = request.channel
    transport = request.transport
    transport.write(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
        + _UPGRADE
        + b"\r\n\r\n"
    )
    request.transport = None
    channel.setTimeout(None)
    if isinstance(channel, IdleTimer):
        channel.stop_idle()  # the timer would hold the channel until it fired
    channel._savedTimeOut = None  # noqa: SLF001  (Twisted's; restored when a request ends)
    channel.relay_upgraded = protocol
    if isinstance(transport, ProtocolWrapper):  # TLS wraps the HTTP channel
        wrapper: Any = transport  # zope-typed: its wrappedProtocol is an IProtocol
        wrapper.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    channel.let_go()  # a pool connection is no visitor's: its address's place is given back
    _forget(request)
    channel._networkProducer.resumeProducing()  # noqa: SLF001
