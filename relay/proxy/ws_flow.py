"""Backpressure for a visitor's WebSocket, both ways, and a clear refusal of its handshake.

Daphne bounds neither direction: every message a visitor sends goes into the application's
queue at once, and every `websocket.send` goes into Twisted's transport buffer at once. So
`relay.edge.server` hands a WebSocket application a `WsFlow` instead of Daphne's queue:

- as the queue (`put_nowait`/`get`), it counts the bytes of messages not yet taken and
  pauses reading the visitor's socket above RELAY_WS_BUFFER_BYTES, resuming below half;
- registered as the transport's push producer once the WebSocket is open, it is paused by
  Twisted while the visitor's send buffer is full: the relay then waits (`writable`) before
  it reads more from the tunnel, and stops reading the visitor too (its pings would pile
  up pongs that it does not read);
- `refuse` answers the handshake with an HTTP status and a JSON message (Daphne can only
  send 403 without a body).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from http import HTTPStatus
from typing import Any

from relay.protocol import MESSAGE_OVERHEAD_BYTES

logger = logging.getLogger(__name__)


class WsFlow:
    def __init__(self, protocol: Any, high_water: int) -> None:
        self.protocol = protocol  # Daphne's WebSocketProtocol (autobahn)
        self.high_water = high_water
        self.low_water = high_water // 2
        self.queued_bytes = 0
        self.queue_full = False  # above high_water, until back under low_water
        self.write_paused = False  # the visitor's send buffer is full
        self.reading_paused = False
        self.gone = False
        self._messages: deque[dict[str, Any]] = deque()
        self._arrived: asyncio.Future[None] | None = None
        self._resumed: asyncio.Future[None] | None = None
        self._registered = False
        # The status refuse() answered the handshake with (0: none): written on the socket
        # past ASGI's send, so the access log reads it here (relay/access_log.py).
        self.refused_status = 0

    # --- the application's input queue (Daphne calls put_nowait) ---------------------------
    def put_nowait(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self.queued_bytes += _size(message)
        if message["type"] == "websocket.disconnect":
            self._set_gone()
        elif self.queued_bytes > self.high_water and not self.queue_full:
            self.queue_full = True
            self._sync_reading()
        waiter = self._arrived
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self._messages:
            self._arrived = asyncio.get_running_loop().create_future()
            try:
                await self._arrived
            finally:
                self._arrived = None
        return self._pop()

    def get_nowait(self) -> dict[str, Any] | None:
        """The next message if one is queued, else None (never waits)."""
        return self._pop() if self._messages else None

    def _pop(self) -> dict[str, Any]:
        """The first queued message (there is one); reading resumes below the low mark."""
        message = self._messages.popleft()
        self.queued_bytes -= _size(message)
        if self.queue_full and self.queued_bytes <= self.low_water:
            self.queue_full = False
            self._sync_reading()
        return message

    def _sync_reading(self) -> None:
        """Read the visitor unless the relay is behind with its messages, or the visitor is
        behind with ours: then what it sends (pings too, each answered with a pong that
        would pile up in Twisted's buffer) stays in its own socket buffers."""
        transport = self.protocol.transport
        pause = self.queue_full or self.write_paused
        if transport is None or self.gone or pause == self.reading_paused:
            return
        self.reading_paused = pause
        if pause:
            transport.pauseProducing()
        else:
            transport.resumeProducing()

    # --- IPushProducer, registered on the visitor's transport -------------------------------
    def register(self) -> None:
        """Take over as the transport's producer (after the upgrade, Twisted's HTTP channel
        still is, though it no longer writes)."""
        transport = self.protocol.transport
        if self._registered or transport is None:
            return
        try:
            transport.unregisterProducer()
            transport.registerProducer(self, True)
        except Exception as exc:  # no backpressure is better than no WebSocket
            logger.warning("websocket: cannot watch the visitor's send buffer: %r", exc)
            return
        self._registered = True

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self.write_paused = True
        self._sync_reading()

    def resumeProducing(self) -> None:  # noqa: N802
        self.write_paused = False
        self._sync_reading()
        waiter = self._resumed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stopProducing(self) -> None:  # noqa: N802
        self._set_gone()

    # --- used by the relay ------------------------------------------------------------------
    async def writable(self) -> None:
        """Return once the visitor's send buffer has room (or the visitor is gone)."""
        while self.write_paused and not self.gone:
            self._resumed = asyncio.get_running_loop().create_future()
            try:
                await self._resumed
            finally:
                self._resumed = None

    def _set_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        self.write_paused = False
        waiter = self._resumed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def refuse(self, status: int, message: str, retry_after: int | None = None) -> bool:
        """Answer the handshake with `status` and {"message"}; False once it is too late
        (the WebSocket was accepted, or the visitor left)."""
        protocol = self.protocol
        transport = protocol.transport
        if transport is None or not hasattr(protocol, "handshake_deferred"):
            return False
        del protocol.handshake_deferred  # Daphne must not answer it too
        protocol.muted = True  # nor pass the application a disconnect
        body = json.dumps({"message": message}).encode()
        head = [
            f"HTTP/1.1 {status} {_reason(status)}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if retry_after is not None:
            head.append(f"Retry-After: {retry_after}")
        protocol.sendData(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        # Closed the way autobahn fails a handshake itself: its state becomes CLOSED, so
        # Daphne's connect timeout never tries to answer the handshake a second time.
        protocol.wasNotCleanReason = message
        protocol.dropConnection(abort=False)
        self.refused_status = status
        return True


def _size(message: dict[str, Any]) -> int:
    payload = message.get("bytes") or message.get("text") or b""
    return len(payload) + MESSAGE_OVERHEAD_BYTES


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
