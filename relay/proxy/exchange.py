"""One HTTP exchange over an upstream connection: write the visitor's request, read the
response head, stream the response back to the visitor.

Shared by a tunnel's pool socket (`relay.pool.socket.PoolSocket`) and a connection to the node
that owns a tunnel (`relay.cluster.peer_pool.PeerConnection`); both frame with h11 and offer `send`,
`drain`, `next_event` and `poll_event`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import h11
from django.conf import settings

from relay import headers as hdrs
from relay.asgi_types import H11Event, H11Next, H11Received, Message, Receive, Scope, Send
from relay.pool.bandwidth import Paced, pace
from relay.pool.captures import Capture
from relay.pool.errors import PoolError
from relay.protocol import EVENTS_PER_TURN, MAX_INFORMATIONAL
from relay.proxy.flow import Flow

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Upstream(Protocol):
    def send(self, *events: H11Event) -> None: ...

    async def drain(self, timeout: float | None = None) -> None: ...

    async def next_event(self, timeout: float) -> H11Received: ...

    def poll_event(self) -> H11Next: ...


class Progress:
    """How far an exchange got: the request body written upstream (`body`), whether the
    visitor has the response head (`started`: after that, only cutting the stream is
    honest) and the response bytes sent to the visitor. The caller counts from it, also
    when the visitor leaves mid-exchange (a CancelledError)."""

    __slots__ = ("body", "started", "sent")

    def __init__(self) -> None:
        self.body = 0
        self.started = False
        self.sent = 0


# What an upstream's failure looks like: the caller maps it to the visitor's 502 or 504.
FAILURES = (PoolError, h11.ProtocolError, TimeoutError, ConnectionError)


async def exchange(
    conn: Upstream,
    receive: Receive,
    send: Send,
    flow: Flow | None,
    head: h11.Request,
    first: Message,
    progress: Progress,
    timeout: float,
    head_timeout: float,
    *,
    drain: bool = False,
    on_head: Callable[[h11.Response], None] | None = None,
    peer: bool = False,
    capture: Capture | None = None,
    paced: Paced | None = None,
) -> BaseException | None:
    """One exchange over `conn`, the skeleton pool sockets (relay/proxy/http.py) and peer
    nodes (relay/cluster/peer_proxy.py) share: write the request, skip 1xx answers, check the
    head, stream the body to the visitor. None when the whole response reached the
    visitor; else the failure, after the visitor's connection was cut if it had the head
    already. `timeout` bounds each wait for the upstream to take or send more bytes,
    `head_timeout` the wait for the head; `drain` waits until the request is written
    before reading (a peer connection); `on_head` sees the head before it is sent; `peer`:
    the upstream is the node that owns the tunnel, whose own visitor cookies (a team-only
    pass, the warning's Continue) pass, where an app's Set-Cookie for them is dropped.
    `capture`: the request inspector's record of this exchange (relay/pool/captures.py),
    None when its tunnel keeps none: it is fed the bodies and the response head. `paced`:
    the tunnel, on the node that owns it only, whose owner's bandwidth (its `shaper`,
    relay/pool/bandwidth.py) each body piece waits for before it is passed on."""
    try:
        progress.body = await write_request(conn, receive, head, first, timeout, capture, paced)
        if drain:
            await conn.drain(timeout)
        response = await read_response_head(conn, head_timeout)
        if on_head is not None:
            on_head(response)
        if capture is not None:
            capture.response_head(response.status_code, response.reason, response.headers)
        await stream_response(conn, send, flow, response, timeout, progress, peer, capture, paced)
    except FAILURES as exc:
        if progress.started:
            cut(flow)
        return exc
    return None


def build_request(
    scope: Scope,
    first: Message,
    headers: list[tuple[bytes, bytes]],
    declared: bytes | None,
    had_framing: bool,
) -> h11.Request:
    """The request to send upstream, framed by the relay. `declared` is the visitor's
    Content-Length, `had_framing` whether it sent framing headers at all (so an empty POST
    still says `Content-Length: 0`). Raises h11.LocalProtocolError for what cannot be sent."""
    length = _body_length(scope, first, declared)
    if length is None:
        headers.append((b"transfer-encoding", b"chunked"))
    elif length or had_framing or scope["method"] in _BODY_METHODS:
        headers.append((b"content-length", str(length).encode()))
    return h11.Request(method=scope["method"], target=hdrs.request_target(scope), headers=headers)


def _body_length(scope: Scope, first: Message, declared: bytes | None) -> int | None:
    """The request body's length, or None when it is only known at its end (chunked)."""
    # Under runrelay the public server holds the whole body before the relay starts, so
    # upstream gets a Content-Length even when the visitor sent chunks.
    known = scope.get("extensions", {}).get("tunnelsite.body_length")
    if known is not None:
        return int(known)
    if not first.get("more_body", False):
        return len(first.get("body", b""))
    if declared is not None and declared.isdigit():
        return int(declared)
    return None


async def write_request(
    conn: Upstream,
    receive: Receive,
    head: h11.Request,
    first: Message,
    timeout: float,
    capture: Capture | None = None,
    paced: Paced | None = None,
) -> int:
    """Write the request; returns the body's size. The head, the first piece of body and
    (for most requests) the end go out in one write: one syscall, one TCP segment. A client
    that takes none of the body for `timeout` seconds raises TimeoutError (a 504)."""
    body = first.get("body", b"")
    more = first.get("more_body", False)
    received = len(body)
    if capture is not None:
        capture.request.add(body)
    if paced is not None and paced.shaper is not None and body:  # the plan's bandwidth
        await pace(paced, len(body), True)  # the piece waits, nothing is cut
    events: list[h11.Event] = [head]
    if body:
        events.append(h11.Data(data=body))
    if not more:
        events.append(h11.EndOfMessage())
    conn.send(*events)
    while more:
        await conn.drain(timeout)
        message = await receive()
        if message["type"] != "http.request":
            raise asyncio.CancelledError  # the visitor left mid-upload
        body = message.get("body", b"")
        more = message.get("more_body", False)
        received += len(body)
        if capture is not None:
            capture.request.add(body)
        if paced is not None and paced.shaper is not None and body:
            await pace(paced, len(body), True)
        events = [h11.Data(data=body)] if body else []
        if not more:
            events.append(h11.EndOfMessage())
        conn.send(*events)
    return received


async def read_response_head(conn: Upstream, timeout: float) -> h11.Response:
    event = await conn.next_event(timeout)
    skipped = 0
    while type(event) is h11.InformationalResponse and skipped < MAX_INFORMATIONAL:
        skipped += 1
        event = await conn.next_event(timeout)
    if type(event) is not h11.Response:
        raise PoolError(f"expected a response, got {type(event).__name__}")
    # h11 lets Transfer-Encoding win over Content-Length (RFC 9112 section 6.3); a response
    # with both is a smuggling attempt or a broken app, and the visitor would get a stale
    # Content-Length, so it is refused (502) instead.
    names = {name for name, _ in event.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise PoolError("a response with both Content-Length and Transfer-Encoding")
    # h11 bounds a head only while it is incomplete; one that arrived whole in a single read
    # is measured here, so the visitor never gets more header than the relay allows.
    size = sum(len(name) + len(value) + 4 for name, value in event.headers)
    if size > settings.RELAY_MAX_HEADER_BYTES:
        raise PoolError(f"a response head of {size} bytes")
    return event


async def stream_response(
    conn: Upstream,
    send: Send,
    flow: Flow | None,
    response: h11.Response,
    timeout: float,
    progress: Progress,
    peer: bool = False,
    capture: Capture | None = None,
    paced: Paced | None = None,
) -> None:
    """Send `response` and its body to the visitor, with the visitor's backpressure (and
    the first bytes of it to `capture`)."""
    # Twisted writes the head with the first body bytes anyway; waiting for them here means
    # a body that is broken from its start is still a clean 502, not a silent cut.
    event: H11Next = await conn.next_event(timeout)
    progress.started = True
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": hdrs.response_headers(response.headers, app=not peer),
        }
    )
    if flow is not None:
        flow.register()
    # Every Data event already parsed goes to the visitor as one piece (one Twisted write,
    # not one per chunk: an app's 1-byte chunks would cost a write each); the last piece
    # rides with the end of the response when both are already here. After EVENTS_PER_TURN
    # events the relay yields to the loop, so a stream of tiny chunks cannot hold it.
    events = 0
    while True:
        parts: list[bytes] = []
        while type(event) is h11.Data and events < EVENTS_PER_TURN:
            parts.append(event.data)
            events += 1
            event = conn.poll_event()
        data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        if type(event) is h11.EndOfMessage:
            tail = data
            break
        if type(event) is not h11.Data and event is not h11.NEED_DATA:
            raise PoolError(f"unexpected {type(event).__name__} in a response body")
        if data:
            if capture is not None:
                capture.response.add(data)
            if paced is not None and paced.shaper is not None:  # the pool socket is not read
                await pace(paced, len(data), False)  # meanwhile: the plan's bandwidth
            if flow is not None and flow.paused:
                # A visitor who stops reading must not hold the pool socket for ever.
                async with asyncio.timeout(timeout):
                    await flow.writable()
            await send({"type": "http.response.body", "body": data, "more_body": True})
            progress.sent += len(data)
        if events >= EVENTS_PER_TURN:
            events = 0
            await asyncio.sleep(0)
        if event is h11.NEED_DATA:
            event = await conn.next_event(timeout)
    if flow is not None:
        flow.unregister()
    progress.sent += len(tail)
    if capture is not None:
        capture.response.add(tail)
    if paced is not None and paced.shaper is not None and tail:
        await pace(paced, len(tail), False)
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def cut(flow: Flow | None) -> None:
    """A response failed after its head was sent: cut the visitor's connection."""
    if flow is not None:
        flow.unregister()
        flow.abort()
