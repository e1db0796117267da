"""Plain HTTP through a tunnel: visitor request -> pool socket -> response -> visitor.

This is the byte path: no ORM, no logging at INFO, no JSON. Counters go on the in-memory
`Tunnel` and are flushed by the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from html import escape

import h11

from relay import headers as hdrs
from relay.asgi_types import Message, Receive, Scope, Send
from relay.errors import error_response, page, send_error, wants_json
from relay.pool.quota import DayUsed, visitor_key
from relay.pool.registry import get_registry
from relay.pool.sanctions import visitor_message
from relay.pool.socket import PoolSocket
from relay.pool.tcp_text import http_refusal
from relay.pool.tunnel import NoSocket, Tunnel
from relay.protocol import HOP_SCOPE_KEY, SUSPENDED_STATUS
from relay.proxy import gate
from relay.proxy.exchange import Progress, build_request, exchange
from relay.proxy.flow import Flow
from relay.request_settings import request_settings
from relay.stats import STATS

logger = logging.getLogger(__name__)

TCP_TITLE = "A TCP tunnel"  # the tunnel exists: "No such tunnel" (404's usual title) would mislead


async def _refuse_tcp(scope: Scope, send: Send, tunnel: Tunnel) -> None:
    """404 to an HTTP visitor of a TCP tunnel's host, saying where to connect; its HTML page
    is titled for a TCP tunnel."""
    message = http_refusal(tunnel)
    if wants_json(scope):
        await send_error(scope, send, 404, message)
        return
    headers, _ = error_response(scope, 404, message)
    body = page(f"404 {TCP_TITLE}", f"<h1>404 &middot; {TCP_TITLE}</h1><p>{escape(message)}</p>")
    headers = [(n, str(len(body)).encode() if n == b"content-length" else v) for n, v in headers]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def proxy_http(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    registry = get_registry()
    tunnel = registry.get(name)
    if tunnel is None:
        suspended = registry.sanctions.suspension(name)  # an operator's Suspend
        if suspended is not None:
            await send_error(scope, send, SUSPENDED_STATUS, visitor_message(suspended))
            return
        if registry.cluster is not None and HOP_SCOPE_KEY not in scope:  # scale-out
            await registry.cluster.forward_http(scope, receive, send, name)
            return
        await send_error(scope, send, 404, f"There is no tunnel called {name!r} on this relay.")
        return
    if tunnel.tcp is not None:  # its pool connections carry frames: never an HTTP exchange
        await _refuse_tcp(scope, send, tunnel)
        return
    if tunnel.quota is not None:  # plan limits, integer checks only
        refusal = tunnel.quota.admit(tunnel, scope, time.monotonic())
        if refusal is not None:
            await send_error(scope, send, *refusal)
            return
    flow: Flow | None = scope.get("extensions", {}).get("tunnelsite.flow")
    if flow is not None:
        flow.task = asyncio.current_task()
    first = await receive()
    if first["type"] != "http.request":
        return  # the visitor left before we started
    if tunnel.access is not None:  # who may visit (relay/proxy/gate.py), before a pool socket
        passed = await gate.check(name, tunnel.user_id, tunnel.access, scope, first)
        if isinstance(passed, gate.Answer):
            await send(
                {"type": "http.response.start", "status": passed.status, "headers": passed.headers}
            )
            await send({"type": "http.response.body", "body": passed.body})
            return
        scope = passed
    try:
        head = _request_event(scope, first)
    except h11.LocalProtocolError as exc:
        await send_error(scope, send, 400, f"The request cannot be forwarded: {exc}")
        return
    registry.request_started()
    try:
        await _exchange(tunnel, scope, receive, send, flow, head, first)
    finally:
        registry.request_finished()


def _request_event(scope: Scope, first: Message) -> h11.Request:
    headers, declared_length, had_framing = hdrs.request_headers(scope)
    return build_request(scope, first, headers, declared_length, had_framing)


# RFC 9110 section 9.2.1: safe methods. Only these, and only without a body, are sent to a
# second pool socket when the first closed without a byte of answer (the client dropped it,
# or the app closed its connection at once): the app may have acted on anything else.
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


async def _exchange(
    tunnel: Tunnel,
    scope: Scope,
    receive: Receive,
    send: Send,
    flow: Flow | None,
    head: h11.Request,
    first: Message,
) -> None:
    cfg = request_settings()
    retry = scope["method"] in _SAFE and not first.get("body") and not first.get("more_body")
    visitor = visitor_key(scope)  # for its share of the tunnel's sockets
    for attempt in range(2 if retry else 1):
        try:
            conn = await tunnel.acquire(cfg.socket_wait_s, cfg.max_waiters, visitor)
        except NoSocket as exc:
            await send_error(scope, send, exc.status, exc.message, exc.retry_after)
            return
        if attempt == 0:  # once: a retry on a second socket is the same request
            tunnel.carried_request()
        last = attempt == 1 or not retry
        if await _attempt(tunnel, conn, scope, receive, send, flow, head, first, last):
            return


async def _attempt(
    tunnel: Tunnel,
    conn: PoolSocket,
    scope: Scope,
    receive: Receive,
    send: Send,
    flow: Flow | None,
    head: h11.Request,
    first: Message,
    last: bool,
) -> bool:
    """One exchange on `conn`; False when the socket closed unanswered and, not being the
    `last` attempt, the request may go to another socket."""
    timeout = request_settings().response_timeout_s
    reusable = False
    progress = Progress()
    mark = conn.received
    capture = None
    if tunnel.captures is not None:  # the request inspector (relay/pool/captures.py)
        capture = tunnel.captures.begin(
            head.method.decode("ascii"),
            head.target.decode("latin-1"),
            head.headers,
            hdrs.client_ip(scope),
        )
    error = "the visitor left"  # unless the exchange ends otherwise below
    tunnel.dirty = True
    tunnel.last_activity = time.monotonic()
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
            timeout,
            capture=capture,
            paced=tunnel,  # the owner's bandwidth and the account's day (shaper, quota)
        )
        if exc is None:
            error = ""
            # Not after a request with a body through a raw-pipe client (npm): an app may
            # answer before reading the body, then take the body for a request of its own,
            # and that client passes the second answer on whenever it comes, possibly in the
            # next visitor's exchange. Our lt (it sends a client id) frames each exchange
            # itself and drops its local connection after a body (tunnelsite_client/keepalive.py
            # `ready_for_next`). The other rules for raw pipes are in
            # PoolSocket.finish_exchange.
            reusable = conn.finish_exchange(bool(progress.body))
            return True
        logger.debug("tunnel %s: exchange failed: %r", tunnel.name, exc)
        silent = conn.received == mark  # not one byte of answer came back
        if isinstance(exc, DayUsed):
            # The account's bytes for today ran out mid-body: the pool socket, mid-message,
            # is closed below; a visitor with the response head had its connection cut.
            if progress.started:
                error = "cut: the account's daily traffic allowance ran out"
            else:
                error = "429: the account's daily traffic allowance ran out"
                await send_error(scope, send, *exc.refusal)
        elif progress.started:
            error = "cut: the tunnel's response broke off"  # the visitor's connection was cut
        elif isinstance(exc, TimeoutError):
            error = f"504: no answer within {timeout:g} s"
            STATS.response_timeout += 1
            cause = f": {_APP_DOWN}" if silent else "."
            await send_error(
                scope,
                send,
                504,
                f"The tunnel {tunnel.name} did not answer within {timeout:g} s{cause}",
            )
        elif silent:
            if not last:
                capture = None  # captured on the next socket
                return False
            error = "502: the client closed the connection without a response"
            STATS.app_unreachable += 1
            await send_error(
                scope,
                send,
                502,
                f"The local app of the tunnel {tunnel.name} is not answering: its client "
                "closed the connection without a response. Is the app running, on the port "
                "given to lt?",
            )
        else:
            error = "502: an invalid or incomplete response"
            STATS.bad_response += 1
            await send_error(
                scope,
                send,
                502,
                f"The tunnel {tunnel.name} sent an invalid or incomplete response.",
            )
    finally:
        if capture is not None and tunnel.captures is not None:
            tunnel.captures.finish(capture, error)
        # The account's bytes for today were counted piece by piece (exchange.carry).
        tunnel.carried(progress.body, progress.sent)  # (after a close too: relay/stats.py)
        if reusable:
            tunnel.release(conn)
        else:
            tunnel.discard(conn)
    return True


_APP_DOWN = (
    "its local app may be down or slow (with the npm client, a request waits while the app "
    "refuses connections). Check that the app runs on the port given to lt."
)
