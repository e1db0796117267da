"""WebSocket through a tunnel.

Daphne ends the visitor's WebSocket and hands the relay whole messages; the relay admits
it against the tunnel's WebSocket share, takes a pool socket and opens a WebSocket to the
local app over it (the client passes those bytes through raw after the 101) with wsproto
(relay/proxy/ws_bridge.py), which copies messages both ways. The pool socket is never
reused afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import time

from django.conf import settings
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from relay import headers as hdrs
from relay.asgi_types import Receive, Scope, Send
from relay.pool.errors import PoolError
from relay.pool.quota import visitor_key
from relay.pool.registry import get_registry
from relay.pool.sanctions import visitor_message
from relay.pool.socket import PoolSocket
from relay.pool.tcp_text import http_refusal
from relay.pool.tunnel import NoSocket, Tunnel
from relay.protocol import HOP_SCOPE_KEY, SUSPENDED_STATUS
from relay.proxy import gate
from relay.proxy.ws_bridge import bridge, handshake_request, visitor_close_code
from relay.proxy.ws_flow import WsFlow
from relay.stats import STATS

logger = logging.getLogger(__name__)


async def proxy_websocket(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    registry = get_registry()
    tunnel = registry.get(name)
    if tunnel is None:
        suspended = registry.sanctions.suspension(name)  # an operator's Suspend
        if suspended is not None:
            await refuse(scope, send, SUSPENDED_STATUS, visitor_message(suspended))
            return
        if registry.cluster is not None and HOP_SCOPE_KEY not in scope:  # scale-out
            await registry.cluster.forward_websocket(scope, receive, send, name)
            return
        await refuse(scope, send, 404, f"There is no tunnel called {name!r} on this relay.")
        return
    if tunnel.tcp is not None:  # its pool connections carry frames: never a WebSocket
        await refuse(scope, send, 404, http_refusal(tunnel))
        return
    if tunnel.access is not None:  # who may visit (relay/proxy/gate.py), before a pool socket
        passed = await gate.check(name, tunnel.user_id, tunnel.access, scope, None)
        if isinstance(passed, gate.Answer):
            await refuse(scope, send, passed.status, passed.message)
            return
        scope = passed
    if tunnel.quota is not None:  # the account's limits: the handshake counts as a request
        refusal = tunnel.quota.admit(tunnel, scope, time.monotonic())
        if refusal is not None:
            await refuse(scope, send, *refusal)
            return
    visitor = visitor_key(scope)  # one /64 is one visitor, as for connections
    try:
        tunnel.admit_websocket(
            visitor, settings.RELAY_SPARE_SOCKETS, settings.RELAY_WS_MAX_PER_VISITOR
        )
    except NoSocket as exc:
        await refuse(scope, send, exc.status, exc.message, exc.retry_after)
        return
    try:
        try:
            conn = await tunnel.acquire(
                settings.RELAY_SOCKET_WAIT_S, settings.RELAY_MAX_WAITERS, visitor
            )
        except NoSocket as exc:
            await refuse(scope, send, exc.status, exc.message, exc.retry_after)
            return
        registry.request_started()
        tunnel.carried_request()
        tunnel.dirty = True
        tunnel.last_activity = time.monotonic()
        try:
            await _bridge(scope, receive, send, conn, tunnel)
        except (PoolError, TimeoutError, LocalProtocolError, RemoteProtocolError) as exc:
            logger.debug("tunnel %s: websocket failed: %r", tunnel.name, exc)
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": visitor_close_code(1011)})
        finally:
            registry.request_finished()
            tunnel.discard(conn)
    finally:
        tunnel.websocket_closed(visitor)


async def refuse(
    scope: Scope, send: Send, status: int, message: str, retry_after: int | None = None
) -> None:
    """Refuse the visitor's handshake with `status` and a JSON `message` (Daphne alone could
    only send a bare 403)."""
    flow: WsFlow | None = scope.get("extensions", {}).get("tunnelsite.ws_flow")
    logger.debug("websocket refused with %d: %s", status, message)
    if flow is None or not flow.refuse(status, message, retry_after):
        await send({"type": "websocket.close", "code": 1013 if status >= 500 else 1008})


async def _bridge(
    scope: Scope, receive: Receive, send: Send, conn: PoolSocket, tunnel: Tunnel
) -> None:
    forwarded, _, _ = hdrs.request_headers(scope)
    host = next((v for n, v in forwarded if n == b"host"), b"") or tunnel.name.encode()
    request = handshake_request(scope, forwarded, host)
    flow = scope.get("extensions", {}).get("tunnelsite.ws_flow")
    timeout = settings.RELAY_RESPONSE_TIMEOUT_S
    STATS.websockets_opened += 1  # its handshake goes to the app
    try:
        await bridge(receive, send, conn, tunnel, request, timeout, flow, tunnel)
    finally:
        STATS.websockets_closed += 1
