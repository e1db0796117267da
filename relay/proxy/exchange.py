"""One HTTP exchange over an upstream connection: write the visitor's request, read the
response head, stream the response back to the visitor.

Shared by a tunnel's pool socket (`relay.pool.socket.PoolSocket`) and a connection to the node
that owns a tunnel (`relay.cluster.peer_pool.PeerConnection`); both take and give h11's events
(a pool socket frames the common exchange without h11's state machine: relay/pool/wire.py)
and offer `send`, `drain`, `next_event` and `poll_event`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import h11

from relay import headers as hdrs
from relay.asgi_types import H11Event, H11Next, H11Received, Message, Receive, Scope, Send
from relay.pool.bandwidth import Paced, pace
from relay.pool.captures import Capture
from relay.pool.errors import PoolError
from relay.pool.quota import DayUsed, Quota
from relay.pool.wire import END_OF_MESSAGE, data_event, request_event
from relay.protocol import EVENTS_PER_TURN, MAX_INFORMATIONAL
from relay.proxy.flow import Flow
from relay.request_settings import request_settings

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Upstream(Protocol):
    def send(self, *events: H11Event) -> None: ...

    async def drain(self, timeout: float | None = None) -> None: ...

    async def next_event(self, timeout: float, deadline: float | None = None) -> H11Received: ...

    def poll_event(self) -> H11Next: ...


class Carrier(Paced, Protocol):
    """What a body piece is measured against on the node that owns the tunnel: its owner's
    bandwidth (`shaper`) and its account's bytes for today (`quota`; relay/pool/tunnel.py)."""

    quota: Quota | None


def count(carrier: Carrier, size: int) -> None:
    """The one check of the day's bytes on an HTTP body piece, for every copier (request
    bodies up and responses down in `write_request`/`stream_response` via `carry`, a
    replay's body and answer in relay/proxy/replay.py): count `size` for the account, or
    raise DayUsed when its bytes for today are used up, before the piece passes. An integer
    compare; an empty piece (the end of a body) is never refused."""
    quota = carrier.quota
    if quota is not None and size and not quota.spend(size):
        raise DayUsed(quota.day_refusal(time.time()))


def spent(carrier: Carrier | None) -> None:
    """Raise DayUsed if the account's bytes for today are used up, counting nothing: before a
    response's head, so a visitor whose response would be cut at its first piece gets the
    day's 429 instead. (The first piece is counted by `carry` right after, with nothing
    awaited between unless the plan's bandwidth makes it wait: then another exchange may
    spend the day meanwhile, and this one is cut at its first piece.)"""
    quota = carrier.quota if carrier is not None else None
    if quota is not None and quota.over_day_bytes():
        raise DayUsed(quota.day_refusal(time.time()))


async def carry(carrier: Carrier | None, size: int, up: bool) -> None:
    """Before a body piece of `size` bytes is passed on (`up`: visitor to app): wait for the
    owner's bandwidth, then count it for the account's day (`count`). None: a forwarding
    node's hop, measured on the node that owns the tunnel."""
    if carrier is None:
        return
    if carrier.shaper is not None and size:  # the plan's bandwidth: the piece waits
        await pace(carrier, size, up)
    count(carrier, size)


class Progress:
    """How far an exchange got: the request body written upstream so far (`body`), whether the
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
# How an exchange can stop: a failure, or the account's bytes for today used up mid-body (a
# 429 while the visitor has no response yet; after that, a cut like a failure's).
STOPS = (*FAILURES, DayUsed)


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
    paced: Carrier | None = None,
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
    relay/pool/bandwidth.py) each body piece waits for, and whose account's bytes for today
    (its `quota`) each piece is counted against, before it is passed on (`carry`): DayUsed
    when they run out mid-body."""
    try:
        await write_request(conn, receive, head, first, timeout, capture, paced, progress)
        if drain:
            await conn.drain(timeout)
        response = await read_response_head(conn, head_timeout)
        if on_head is not None:
            on_head(response)
        if capture is not None:
            capture.response_head(response.status_code, response.reason, response.headers)
        await stream_response(conn, send, flow, response, timeout, progress, peer, capture, paced)
    except STOPS as exc:
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
    method: str = scope["method"]
    target = hdrs.request_target(scope)
    # h11's checks in one pass (relay/pool/wire.py); what they do not pass, h11 decides
    # as ever, raising its own error.
    event = request_event(method.encode(), target, headers)
    if event is None:
        event = h11.Request(method=method, target=target, headers=headers)
    return event


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
    paced: Carrier | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the request; returns the body's size (also kept in `progress.body` as it is
    written, so a body cut off midway counts what went up). The head, the first piece of
    body and (for most requests) the end go out in one write: one syscall, one TCP
    segment. A client that takes none of the body for `timeout` seconds raises
    TimeoutError (a 504); the account's bytes for today used up raises DayUsed before the
    piece that would pass them goes up (`carry`)."""
    body = first.get("body", b"")
    more = first.get("more_body", False)
    received = len(body)
    if capture is not None:
        capture.request.add(body)
    await carry(paced, len(body), True)  # the plan's bandwidth waits, its day's bytes stop
    events: list[h11.Event] = [head]
    if body:
        events.append(data_event(body))
    if not more:
        events.append(END_OF_MESSAGE)
    conn.send(*events)
    if progress is not None:
        progress.body = received
    while more:
        await conn.drain(timeout)
        message = await receive()
        if message["type"] != "http.request":
            raise asyncio.CancelledError  # the visitor left mid-upload
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if capture is not None:
            capture.request.add(body)
        await carry(paced, len(body), True)
        events = [data_event(body)] if body else []
        if not more:
            events.append(END_OF_MESSAGE)
        conn.send(*events)
        received += len(body)
        if progress is not None:
            progress.body = received
    return received


async def read_response_head(conn: Upstream, timeout: float) -> h11.Response:
    """The response's head, which must arrive whole within `timeout` (each 1xx before it
    too, and the final head within `timeout` of the last 1xx): bytes do not extend it, or a
    tunnel trickling a head a byte at a time would hold its visitor for hours."""
    loop = asyncio.get_running_loop()
    event = await conn.next_event(timeout, loop.time() + timeout)
    skipped = 0
    while type(event) is h11.InformationalResponse and skipped < MAX_INFORMATIONAL:
        skipped += 1
        event = await conn.next_event(timeout, loop.time() + timeout)
    if type(event) is not h11.Response:
        raise PoolError(f"expected a response, got {type(event).__name__}")
    # h11 lets Transfer-Encoding win over Content-Length (RFC 9112 section 6.3); a response
    # with both is a smuggling attempt or a broken app, and the visitor would get a stale
    # Content-Length, so it is refused (502) instead.
    # (Both checks read h11's list itself, as `stream_response` does.)
    items = event.headers._full_items
    names = [name for _, name, _ in items]
    if b"content-length" in names and b"transfer-encoding" in names:
        raise PoolError("a response with both Content-Length and Transfer-Encoding")
    # h11 bounds a head only while it is incomplete; one that arrived whole in a single read
    # is measured here, so the visitor never gets more header than the relay allows.
    size = sum([len(name) + len(value) for name, _, value in items]) + 4 * len(items)
    if size > request_settings().max_header_bytes:
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
    paced: Carrier | None = None,
) -> None:
    """Send `response` and its body to the visitor, with the visitor's backpressure (and
    the first bytes of it to `capture`). Each piece is carried (`carry`: the plan's
    bandwidth, the account's day) before it is sent: DayUsed stops the body there."""
    # Twisted writes the head with the first body bytes anyway; waiting for them here means
    # a body that is broken from its start is still a clean 502, not a silent cut, and one
    # whose account used up its day's bytes meanwhile (another exchange's) a 429.
    event: H11Next = await conn.next_event(timeout)
    if type(event) is h11.Data:
        spent(paced)
    progress.started = True
    # (h11's list itself: iterating `Headers`, a Sequence, costs a Python call per header)
    fields = [(name, value) for _, name, value in response.headers._full_items]
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": hdrs.response_headers(fields, app=not peer),
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
            await carry(paced, len(data), False)  # the pool socket is not read meanwhile
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
    if capture is not None:
        capture.response.add(tail)
    await carry(paced, len(tail), False)  # the day used up: the visitor gets no end either
    progress.sent += len(tail)
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def cut(flow: Flow | None) -> None:
    """A response failed after its head was sent: cut the visitor's connection."""
    if flow is not None:
        flow.unregister()
        flow.abort()
