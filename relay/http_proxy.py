"""Plain HTTP through a tunnel: visitor request -> pool socket -> response -> visitor.

This is the byte path: no ORM, no logging at INFO, no JSON. Counters go on the in-memory
`Tunnel` and are flushed by the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time

import h11
from django.conf import settings

from relay import headers as hdrs
from relay.asgi_types import Receive, Scope, Send
from relay.errors import send_error
from relay.flow import Flow
from relay.hop import HOP_SCOPE_KEY
from relay.pool import PoolError
from relay.registry import get_registry
from relay.tunnel import NoSocket, Tunnel

logger = logging.getLogger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# 1xx answers skipped before the real one; an endless stream of them would hold the visitor.
MAX_INFORMATIONAL = 8


async def proxy_http(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    registry = get_registry()
    tunnel = registry.get(name)
    if tunnel is None:
        if registry.cluster is not None and HOP_SCOPE_KEY not in scope:  # scale-out
            await registry.cluster.forward_http(scope, receive, send, name)
            return
        await send_error(scope, send, 404, f"There is no tunnel called {name!r} on this relay.")
        return
    if tunnel.quota is not None:  # issue 4: plan limits, integer checks only
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


def _request_event(scope: Scope, first: dict) -> h11.Request:
    headers, declared_length, had_body_headers = hdrs.request_headers(scope)
    length = _body_length(scope, first, declared_length)
    if length is None:
        headers.append((b"transfer-encoding", b"chunked"))
    elif length or had_body_headers or scope["method"] in _BODY_METHODS:
        headers.append((b"content-length", str(length).encode()))
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target = target + b"?" + scope["query_string"]
    return h11.Request(method=scope["method"], target=target, headers=headers)


def _body_length(scope: Scope, first: dict, declared: bytes | None) -> int | None:
    """The request body's length, or None when it is only known at its end (chunked)."""
    # Under runrelay the public server holds the whole body before the relay starts, so
    # the local app gets a Content-Length even when the visitor sent chunks.
    known = scope.get("extensions", {}).get("tunnelsite.body_length")
    if known is not None:
        return int(known)
    if not first.get("more_body", False):
        return len(first.get("body", b""))
    if declared is not None and declared.isdigit():
        return int(declared)
    return None


def _check_framing(response: h11.Response) -> None:
    """h11 lets Transfer-Encoding win over Content-Length (RFC 9112 section 6.3); a response
    with both is a smuggling attempt or a broken app, and the visitor would get a stale
    Content-Length, so it is refused (502) instead."""
    names = {name for name, _ in response.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise PoolError("a response with both Content-Length and Transfer-Encoding")


async def _exchange(
    tunnel: Tunnel,
    scope: Scope,
    receive: Receive,
    send: Send,
    flow: Flow | None,
    head: h11.Request,
    first: dict,
) -> None:
    cfg = settings
    try:
        conn = await tunnel.acquire(cfg.RELAY_SOCKET_WAIT_S, cfg.RELAY_MAX_WAITERS)
    except NoSocket as exc:
        await send_error(scope, send, exc.status, exc.message, exc.retry_after)
        return
    timeout = cfg.RELAY_RESPONSE_TIMEOUT_S
    reusable = False
    started = False
    sent = 0
    tunnel.requests += 1
    tunnel.dirty = True
    tunnel.last_activity = time.monotonic()
    try:
        # The head, the first piece of body and (for most requests) the end go out in one
        # write: one syscall and one TCP segment for a typical request.
        body = first.get("body", b"")
        more = first.get("more_body", False)
        received = len(body)
        events: list[h11.Event] = [head]
        if body:
            events.append(h11.Data(data=body))
        if not more:
            events.append(h11.EndOfMessage())
        conn.send(*events)
        while more:
            await conn.drain()
            message = await receive()
            if message["type"] != "http.request":
                raise asyncio.CancelledError  # the visitor left mid-upload
            body = message.get("body", b"")
            more = message.get("more_body", False)
            received += len(body)
            events = [h11.Data(data=body)] if body else []
            if not more:
                events.append(h11.EndOfMessage())
            conn.send(*events)
        tunnel.bytes_in += received

        event = await conn.next_event(timeout)
        skipped = 0
        while type(event) is h11.InformationalResponse and skipped < MAX_INFORMATIONAL:
            skipped += 1
            event = await conn.next_event(timeout)
        if type(event) is not h11.Response:
            raise PoolError(f"expected a response, got {type(event).__name__}")
        _check_framing(event)
        response = event
        # Twisted writes the head with the first body bytes anyway; waiting for them here
        # means a body that is broken from its start is still a clean 502, not a silent cut.
        event = await conn.next_event(timeout)
        started = True
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": hdrs.response_headers(response.headers),
            }
        )
        if flow is not None:
            flow.register()
        # A chunk is sent as soon as it arrives (so streams flow), except the last one,
        # which rides with the end of the response when both are already here.
        while True:
            kind = type(event)
            if kind is h11.EndOfMessage:
                tail = b""
                break
            if kind is not h11.Data:
                raise PoolError(f"unexpected {kind.__name__} in a response body")
            data = bytes(event.data)
            event = conn.poll_event()
            if type(event) is h11.EndOfMessage:
                tail = data
                break
            if flow is not None and flow.paused:
                await flow.writable()
            await send({"type": "http.response.body", "body": data, "more_body": True})
            sent += len(data)
            if event is h11.NEED_DATA:
                event = await conn.next_event(timeout)
        if flow is not None:
            flow.unregister()
        sent += len(tail)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        reusable = conn.finish_exchange()
    except (PoolError, h11.ProtocolError, TimeoutError) as exc:
        logger.debug("tunnel %s: exchange failed: %r", tunnel.name, exc)
        if started:
            if flow is not None:
                flow.unregister()
                flow.abort()
        elif isinstance(exc, TimeoutError):
            await send_error(
                scope, send, 504, f"The tunnel {tunnel.name} did not answer within {timeout:g} s."
            )
        else:
            await send_error(
                scope,
                send,
                502,
                f"The tunnel {tunnel.name} sent an invalid or incomplete response.",
            )
    finally:
        tunnel.bytes_out += sent
        if reusable:
            tunnel.release(conn)
        else:
            conn.abort()
