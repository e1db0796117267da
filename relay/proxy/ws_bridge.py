"""A WebSocket bridged to a tunnel's app: the upgrade request, the app's answer, then
messages copied both ways with the visitor's backpressure, over a pool socket or a peer
node's connection (anything with write, drain and read_raw).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any, Protocol

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from relay import headers as hdrs
from relay.asgi_types import Receive, Scope, Send
from relay.pool.bandwidth import Paced, pace
from relay.pool.errors import PoolError
from relay.pool.socket import PoolSocket
from relay.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_REFUSAL_BYTES,
    PARSE_SLICE_BYTES,
    WS_MESSAGES_PER_TURN,
    WS_QUOTA_CLOSE_S,
)
from relay.proxy.ws_flow import WsFlow

logger = logging.getLogger(__name__)


# Headers wsproto writes itself for the handshake with the local app.
_HANDSHAKE_OWN = frozenset(
    {
        b"host",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)


def visitor_close_code(code: int) -> int:
    """A close code Daphne can send after the handshake. Its WebSocket library (autobahn)
    raises on anything but 1000 and 3000-4999, so the standard codes are carried in the
    private range instead: 1009 (message too big) becomes 4009, 1011 becomes 4011."""
    if code == 1000 or 3000 <= code <= 4999:
        return code
    if 1000 < code < 2000:
        return 4000 + code - 1000
    return 1000


def handshake_request(scope: Scope, headers: list[tuple[bytes, bytes]], host: bytes) -> Request:
    """The WebSocket handshake to send upstream, carrying the visitor's other headers."""
    return Request(
        host=host.decode("latin-1"),
        target=hdrs.request_target(scope).decode("latin-1"),
        subprotocols=list(scope.get("subprotocols") or []),
        extra_headers=[(n, v) for n, v in headers if n not in _HANDSHAKE_OWN],
    )


class Counted(Protocol):
    """Where a WebSocket's bytes are counted: its tunnel (relay/pool/tunnel.py, which keeps
    them for /metrics even after a close), or the tally of a node that only forwards it
    (relay/cluster/peer_proxy.py), which has no quota."""

    def carried(self, bytes_in: int, bytes_out: int) -> None: ...


async def bridge(
    receive: Receive,
    send: Send,
    conn: Any,
    counters: Counted,
    request: Request,
    timeout: float,
    flow: WsFlow | None = None,
    paced: Paced | None = None,
) -> None:
    """Open a WebSocket upstream over `conn` (a pool socket, or a connection to the node that
    owns the tunnel: anything with write, drain and read_raw), accept the visitor's once the
    far end answers 101, then copy messages both ways until either side closes. Bytes are
    counted on `counters` (`carried`). With the visitor's `flow`, neither
    side is read while the other is behind (see relay.proxy.ws_flow). With `paced`, the
    tunnel on the node that owns it, each message waits its turn for the owner's bandwidth
    (relay/pool/bandwidth.py), counted at its payload's size on the wire (text: UTF-8)."""
    ws = WSConnection(ConnectionType.CLIENT)
    conn.write(ws.send(request))
    accepted: AcceptConnection | None = None
    rejected: RejectConnection | None = None
    refusal = b""  # the body of a refusal, kept up to MAX_REFUSAL_BYTES
    leftover: list = []
    async with asyncio.timeout(timeout):
        while accepted is None:
            data = await conn.read_raw(timeout)
            if not data:
                if rejected is not None:
                    break
                await send({"type": "websocket.close", "code": 1011})
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = event
                elif isinstance(event, RejectConnection):
                    rejected = event
                elif isinstance(event, RejectData):
                    refusal = (refusal + event.data)[:MAX_REFUSAL_BYTES]
                elif accepted is not None:
                    leftover.append(event)
            if rejected is not None and (
                not rejected.has_body
                or ws.state.name == "CLOSED"
                or len(refusal) >= MAX_REFUSAL_BYTES
            ):
                break
    if rejected is not None or accepted is None:
        status = rejected.status_code if rejected is not None else 502
        await _refused_upstream(send, flow, status, refusal)
        return
    await send({"type": "websocket.accept", "subprotocol": accepted.subprotocol})
    if flow is not None:
        flow.register()

    to_app = asyncio.ensure_future(_visitor_to_app(receive, conn, ws, counters, flow, send, paced))
    to_visitor = asyncio.ensure_future(
        _app_to_visitor(send, conn, ws, counters, leftover, flow, paced)
    )
    try:
        done, _ = await asyncio.wait({to_app, to_visitor}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in (to_app, to_visitor):
            task.cancel()
        await asyncio.gather(to_app, to_visitor, return_exceptions=True)


async def _refused_upstream(send: Send, flow: WsFlow | None, status: int, body: bytes) -> None:
    """The far end answered the handshake with `status` instead of 101: the visitor gets that
    status (a 502 for one that is no error) and the far end's JSON message (another relay
    node's refusal) or a sentence saying who refused."""
    try:
        message = json.loads(body)["message"]
        if not isinstance(message, str):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        message = f"The tunnel's app refused the WebSocket with HTTP {status}."
    status = status if 400 <= status < 600 else 502
    if flow is None or not flow.refuse(status, message):
        await send({"type": "websocket.close", "code": 1008})


def _count(tunnel: Any, size: int) -> None:
    """Count `size` message bytes for the tunnel's account (relay/pool/quota.py); `tunnel` may
    be a cluster hop's counters, without a quota."""
    quota = getattr(tunnel, "quota", None)
    if quota is not None:
        quota.add_bytes(size)


def wire_size(payload: str | bytes | bytearray) -> int:
    """A message's payload size on the wire: a text's UTF-8 bytes, not its characters (an
    ASCII text's length is its size: no encoded copy)."""
    if isinstance(payload, str) and not payload.isascii():
        return len(payload.encode("utf-8", "surrogatepass"))
    return len(payload)


def _over(tunnel: Any) -> bool:
    """Whether the tunnel's account has used its bytes for today."""
    quota = getattr(tunnel, "quota", None)
    return quota is not None and bool(quota.over_day_bytes())


def _reason(tunnel: Any) -> str:
    return str(tunnel.quota.day_close_reason())


async def _close_spent(send: Send, tunnel: Any) -> None:
    """The app was told to close (1008, the account's bytes ran out): its answer normally ends
    the bridge through _app_to_visitor (the visitor gets 1008 as 4008, visitor_close_code);
    an app that does not answer within WS_QUOTA_CLOSE_S is not waited for."""
    await asyncio.sleep(WS_QUOTA_CLOSE_S)
    await send({"type": "websocket.close", "code": visitor_close_code(1008)})


async def _visitor_to_app(
    receive: Receive,
    conn: PoolSocket,
    ws: WSConnection,
    tunnel: Counted,
    flow: WsFlow | None,
    send: Send,  # the visitor's side, closed when the account's bytes run out
    paced: Paced | None = None,
) -> None:
    """Copy the visitor's messages to the app. The messages already queued (up to
    WS_MESSAGES_PER_TURN, or PARSE_SLICE_BYTES of frames) go out in one write, then the
    relay waits for the app to take them and yields: a flood of tiny messages costs one
    write per batch, not one per message, and cannot hold the loop."""
    closing = False  # the app was told to close: the account's bytes ran out (_spent)
    while True:
        message = await receive()
        frames: list[bytes] = []
        size = 0  # the frames' bytes (a write's batch)
        paid = 0  # the messages' payload bytes (the plan's bandwidth)
        count = 0
        while True:
            kind = message["type"]
            if kind == "websocket.receive" and ws.state is not ConnectionState.OPEN:
                pass  # closing (the account's bytes ran out): the app's answer ends the bridge
            elif kind == "websocket.receive" and _over(tunnel):
                # The account's bytes for today ran out: not forwarded; the app is told to
                # close (1008, why), and its answer closes the visitor's side.
                frames.append(ws.send(CloseConnection(1008, _reason(tunnel))))
                closing = True
            elif kind == "websocket.receive":
                payload = message.get("text")
                if payload is None:
                    payload = message.get("bytes") or b""
                n = wire_size(payload)
                tunnel.carried(n, 0)
                frame = ws.send(Message(data=payload))
                frames.append(frame)
                size += len(frame)
                paid += n
                _count(tunnel, n)
            elif kind == "websocket.disconnect":
                code = message.get("code", 1000)
                if code in (1005, 1006) or not 1000 <= code < 5000:
                    code = 1000
                with contextlib.suppress(PoolError, LocalProtocolError):
                    frames.append(ws.send(CloseConnection(code=code)))
                    conn.write(b"".join(frames))
                return
            count += 1
            if flow is None or count >= WS_MESSAGES_PER_TURN or size >= PARSE_SLICE_BYTES:
                break
            queued = flow.get_nowait()
            if queued is None:
                break
            message = queued
        if paced is not None and paced.shaper is not None and paid:
            await pace(paced, paid, True)  # the plan's bandwidth: the visitor is not read meanwhile
        conn.write(frames[0] if len(frames) == 1 else b"".join(frames))
        await conn.drain()
        if closing:
            await _close_spent(send, tunnel)
            return
        if count >= WS_MESSAGES_PER_TURN:
            await asyncio.sleep(0)


async def _app_to_visitor(
    send: Send,
    conn: PoolSocket,
    ws: WSConnection,
    tunnel: Counted,  # bridge's `counters`
    leftover: list[Any],
    flow: WsFlow | None,
    paced: Paced | None = None,
) -> None:
    """Copy the app's messages to the visitor. wsproto parses lazily, one event at a time,
    so the relay takes only as many messages as the visitor has room for: once Twisted
    says its send buffer is full, the rest stays unparsed (and the pool socket unread,
    relay.protocol.READ_HIGH_WATER). It yields every WS_MESSAGES_PER_TURN events."""
    parts: list[Any] = []  # str pieces of a text message, bytes-like of a binary one
    size = 0
    turn = 0
    events: Iterator[Any] = iter(leftover)
    while True:
        pongs: list[bytes] = []
        for event in events:
            turn += 1
            if (
                isinstance(event, TextMessage | BytesMessage)
                and ws.state is not ConnectionState.OPEN
            ):
                pass  # closing (the account's bytes ran out): not delivered
            elif isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data)
                size += wire_size(event.data)  # bytes, as MAX_MESSAGE_BYTES and the plan count
                if size > MAX_MESSAGE_BYTES:
                    conn.write(ws.send(CloseConnection(code=1009)))
                    await send({"type": "websocket.close", "code": visitor_close_code(1009)})
                    return
                if event.message_finished:
                    if paced is not None and paced.shaper is not None and size:
                        await pace(paced, size, False)  # the plan's bandwidth: the app waits
                    if isinstance(event, TextMessage):
                        text = "".join(parts)
                        await send({"type": "websocket.send", "text": text})
                    else:
                        data = b"".join(parts)
                        await send({"type": "websocket.send", "bytes": data})
                    tunnel.carried(0, size)
                    _count(tunnel, size)
                    if _over(tunnel) and ws.state is ConnectionState.OPEN:
                        # The account's bytes for today ran out: the app is told (1008, why);
                        # its close answer, below, closes the visitor's side.
                        with contextlib.suppress(PoolError, LocalProtocolError):
                            conn.write(ws.send(CloseConnection(1008, _reason(tunnel))))
                    parts, size = [], 0
                    if flow is not None and flow.write_paused:
                        # The visitor is behind: take no more messages until it catches up.
                        await flow.writable()
            elif isinstance(event, Ping):
                pongs.append(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(PoolError, LocalProtocolError):
                    conn.write(b"".join(pongs) + ws.send(event.response()))
                code = visitor_close_code(event.code or 1000)
                await send({"type": "websocket.close", "code": code})
                return
            if turn >= WS_MESSAGES_PER_TURN:
                turn = 0
                if pongs:
                    conn.write(b"".join(pongs))
                    pongs = []
                    await conn.drain()  # an app that pings but does not read: no pong pile-up
                await asyncio.sleep(0)
        if pongs:
            conn.write(b"".join(pongs))
            await conn.drain()
        if flow is not None:
            # The visitor is behind: leave the app's bytes in the pool socket (its reads
            # pause at relay.protocol.READ_HIGH_WATER) instead of in Twisted's send buffer.
            await flow.writable()
        data = await conn.read_raw(None)
        if not data:
            await send({"type": "websocket.close", "code": visitor_close_code(1011)})
            return
        ws.receive_data(data)
        events = ws.events()
