"""Proxying a visitor's request to the node that owns the tunnel (scale-out).

The request goes to the owner's public listener over a peer connection
(relay/cluster/peer_pool.py), with the same Host header and a signed hop marker
(relay/cluster/hop.py), through the same exchange skeleton as a pool socket's
(relay/proxy/exchange.py). Bodies stream both ways with bounded buffers: the request body
is read chunk by chunk and drained into the socket; the response is read 64 KiB at a time
(StreamReader pauses the socket beyond that) and waits for the visitor when Twisted says
its send buffer is full. WebSockets: a wsproto client handshake to the owner, then messages
are copied both ways as for a pool socket. Nothing here touches the ORM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import h11
from django.conf import settings

from relay.asgi_types import Message, Receive, Scope, Send
from relay.cluster.hop import binding, sign
from relay.cluster.peer_pool import PeerConnection, PeerDown, PeerPool
from relay.errors import send_error
from relay.pool.errors import PoolError
from relay.protocol import ERROR_HEADER, HOP_BY_HOP, HOP_HEADER, PEER_RESPONSE_MARGIN_S
from relay.proxy.exchange import Progress, build_request, exchange
from relay.proxy.flow import Flow
from relay.proxy.ws_bridge import bridge, handshake_request
from relay.stats import STATS

logger = logging.getLogger(__name__)

_DROP = HOP_BY_HOP | {b"expect", HOP_HEADER}


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def forward_headers(scope: Scope, node: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The visitor's headers as the owner should see them, with our hop marker; the Host."""
    named: set[bytes] = set()
    for name, value in scope["headers"]:
        if name == b"connection":
            named |= {t.strip().lower() for t in value.split(b",") if t.strip()}
    out = []
    host = b""
    for name, value in scope["headers"]:
        if name in _DROP or name in named:
            continue
        if name == b"host":
            host = value
        out.append((name, value))
    out.append((HOP_HEADER, sign(node, scope.get("client"), binding(scope, host))))
    return out, host


def _request(scope: Scope, first: Message, node: str) -> h11.Request:
    headers, _ = forward_headers(scope, node)
    declared = next((v for n, v in scope["headers"] if n == b"content-length"), None)
    framing = any(n in (b"content-length", b"transfer-encoding") for n, _ in scope["headers"])
    return build_request(scope, first, headers, declared, framing)


async def forward_http(
    pool: PeerPool,
    node: str,
    address: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    on_stale: Callable[[], None],
) -> None:
    """Send the visitor's request to the owner at `address` and stream its answer back."""
    flow: Flow | None = scope.get("extensions", {}).get("tunnelsite.flow")
    if flow is not None:
        flow.task = asyncio.current_task()
    first = await receive()
    if first["type"] != "http.request":
        return
    try:
        head = _request(scope, first, node)
    except h11.LocalProtocolError as exc:
        await send_error(scope, send, 400, f"The request cannot be forwarded: {exc}")
        return
    # Only a request whose body is all in hand may be sent again on a fresh connection.
    # RFC 9110 section 9.2.2: only a request safe to repeat is retried automatically.
    replayable = not first.get("more_body", False) and scope["method"] in _IDEMPOTENT
    for attempt in range(2):
        if attempt:
            pool.forget(address)  # one kept-alive connection was stale: so may the rest be
        try:
            conn, reused = await pool.acquire(address)
        except PeerDown as exc:
            logger.warning("cannot reach the owner node %s: %s", address, exc)
            on_stale()
            STATS.peer_unreachable += 1
            await send_error(
                scope, send, 503, "The relay node that holds this tunnel is unreachable.", 2
            )
            return
        retry = reused and replayable and attempt == 0
        if await _exchange(pool, conn, scope, receive, send, flow, head, first, retry, on_stale):
            return


async def _exchange(
    pool: PeerPool,
    conn: PeerConnection,
    scope: Scope,
    receive: Receive,
    send: Send,
    flow: Flow | None,
    head: h11.Request,
    first: Message,
    may_retry: bool,
    on_stale: Callable[[], None],
) -> bool:
    """One exchange; False when it failed early on a reused connection and may be retried."""
    timeout = settings.RELAY_RESPONSE_TIMEOUT_S + PEER_RESPONSE_MARGIN_S
    head_timeout = settings.RELAY_SOCKET_WAIT_S + timeout
    reusable = False
    progress = Progress()

    def check_stale(response: h11.Response) -> None:
        if response.status_code == 404 and any(n == ERROR_HEADER for n, _ in response.headers):
            on_stale()  # the owner no longer has it: look it up afresh next time

    try:
        exc = await exchange(
            conn,
            receive,
            send,
            flow,
            head,
            first,
            progress,
            timeout,
            head_timeout,
            drain=True,
            on_head=check_stale,
            peer=True,  # the owner node's answer: its visitor cookies are the relay's own
        )
        if exc is None:
            reusable = conn.reusable()
            return True
        logger.debug("forward to %s failed: %r", conn.address, exc)
        if progress.started:
            return True  # the visitor's connection was cut
        if may_retry and not isinstance(exc, TimeoutError):
            return False
        if isinstance(exc, TimeoutError):
            STATS.peer_timeout += 1
            await send_error(scope, send, 504, "The relay node that holds this tunnel timed out.")
        else:
            STATS.peer_bad_response += 1
            await send_error(
                scope, send, 502, "The relay node that holds this tunnel answered badly."
            )
        return True
    finally:
        if reusable:
            pool.release(conn)
        else:
            conn.abort()


class HopTally:
    """A forwarded WebSocket's bytes on the node that only forwards it: the owner node counts
    them for the tunnel (its quota, /metrics); here they are tallied, nothing more."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0

    def carried(self, bytes_in: int, bytes_out: int) -> None:
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out


async def forward_websocket(
    pool: PeerPool, node: str, address: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """Open the visitor's WebSocket on the owner node and copy messages both ways.

    The caller has already received `websocket.connect`."""
    try:
        conn = await pool.connect(address)
    except PeerDown as exc:
        logger.warning("cannot reach the owner node %s: %s", address, exc)
        await send({"type": "websocket.close", "code": 1013})
        return
    counters = HopTally()
    try:
        headers, host = forward_headers(scope, node)
        request = handshake_request(scope, headers, host)
        timeout = settings.RELAY_SOCKET_WAIT_S + settings.RELAY_RESPONSE_TIMEOUT_S
        flow = scope.get("extensions", {}).get("tunnelsite.ws_flow")
        await bridge(receive, send, conn, counters, request, timeout, flow)
    except (PoolError, TimeoutError) as exc:
        logger.debug("websocket forward to %s failed: %r", address, exc)
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1011})
    finally:
        conn.abort()
