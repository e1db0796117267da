"""Daphne, tuned for a relay.

`RelayServer` is Daphne's `Server` with three additions: each HTTP request gets a
`relay.flow.Flow` (backpressure and disconnect signal) in `scope["extensions"]`; the
request parser answers oversize heads with 431/414 and a JSON message instead of Twisted's
bare 400; and the listening ports are kept so a shutdown can stop accepting first.
"""

from __future__ import annotations

import daphne.server as daphne_server  # isort:skip  (installs the asyncio reactor first)

import asyncio
import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from daphne.http_protocol import HTTPFactory, WebRequest
from django.conf import settings
from twisted.web import http

from relay.flow import Flow

logger = logging.getLogger(__name__)


def _reject(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


# Request bodies are handed to the relay in pieces of this size, read from Twisted's spool
# (memory below 100 KB, a temporary file above) only when the relay asks for the next one.
BODY_CHUNK_BYTES = 256 * 1024


class _NoBody:
    """Stands in for the body file while Daphne's `process` runs, so Daphne does not read
    the whole body into its queue at once (it would hold a 100 MiB upload in memory)."""

    closed = False

    def read(self, size: int = -1) -> bytes:
        return b""

    def seek(self, *args: Any) -> int:
        return 0

    def close(self) -> None:
        pass


class StreamingReceive:
    """The ASGI `receive` of an HTTP request: the body comes lazily from Twisted's spool,
    everything else (`http.disconnect`) from Daphne through `put_nowait`."""

    def __init__(self, body: Any) -> None:
        self._body = body
        body.seek(0, 2)
        self.length = body.tell()  # Twisted has the whole body before the app starts
        body.seek(0)
        self._body_done = False
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def put_nowait(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.request":
            self._events.put_nowait(message)

    async def get(self) -> dict[str, Any]:
        if not self._body_done:
            try:
                chunk = self._body.read(BODY_CHUNK_BYTES)
            except ValueError:  # Twisted closed the spool: the visitor is gone
                self._body_done = True
                return {"type": "http.disconnect"}
            more = len(chunk) == BODY_CHUNK_BYTES
            self._body_done = not more
            return {"type": "http.request", "body": chunk, "more_body": more}
        return await self._events.get()


class RelayWebRequest(WebRequest):
    relay_flow: Flow | None = None

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        super().connectionLost(reason)
        if self.relay_flow is not None:
            self.relay_flow.disconnected()


class RelayHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP channel with the relay's limits and clear answers when they bite."""

    def __init__(self) -> None:
        super().__init__()
        self.totalHeadersSize = settings.RELAY_MAX_HEADER_BYTES
        self.maxHeaders = settings.RELAY_MAX_HEADER_COUNT
        self.MAX_LENGTH = max(
            settings.RELAY_MAX_HEADER_BYTES, settings.RELAY_MAX_REQUEST_LINE_BYTES
        )
        self._rejected = False

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        # Responses go out in more than one write; Nagle would hold the last one back.
        self.transport.setTcpNoDelay(True)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._rejected = True
        self.transport.write(_reject(status, reason, message))
        self.loseConnection()

    def _on_first_line(self) -> bool:
        return bool(getattr(self, "_HTTPChannel__first_line", 0))

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if self._rejected:
            return
        if self._on_first_line() and len(line) > settings.RELAY_MAX_REQUEST_LINE_BYTES:
            self._refuse(414, "URI Too Long", "The request line is too long.")
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            limit = self.totalHeadersSize
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"The request headers are larger than {limit} bytes.",
            )
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:  # noqa: N802
        if self._rejected:
            return False
        if self._receivedHeaderCount >= self.maxHeaders:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"The request has more than {self.maxHeaders} header lines.",
            )
            return False
        return super().headerReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        if self._on_first_line():
            self._refuse(414, "URI Too Long", "The request line is too long.")
        else:
            self._refuse(431, "Request Header Fields Too Large", "A header line is too long.")


class RelayHTTPFactory(HTTPFactory):
    protocol = RelayHTTPChannel

    def buildProtocol(self, addr: Any) -> http.HTTPChannel:  # noqa: N802
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = RelayWebRequest
        return protocol


def _clean(task: asyncio.Future[Any]) -> bool:
    return task.cancelled() or task.exception() is None


class RelayServer(daphne_server.Server):
    def __init__(self, *args: Any, on_listen: Callable[[str, int], None] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.ports: list[Any] = []
        self.on_listen = on_listen

    def run(self) -> None:
        # Daphne builds its factory from this module-level name inside run().
        daphne_server.HTTPFactory = RelayHTTPFactory
        super().run()

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)
        host = port.getHost()
        if self.on_listen is not None:
            self.on_listen(host.host, host.port)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") != "http" or not isinstance(protocol, RelayWebRequest):
            return super().create_application(protocol, scope)
        # Daphne's own version, with a lazy body and a Flow in the scope.
        flow = Flow(protocol)
        protocol.relay_flow = flow
        receive = StreamingReceive(protocol.content)
        scope["extensions"] = {"tunnelsite.flow": flow, "tunnelsite.body_length": receive.length}
        scope.setdefault("asgi", {"version": "3.0"})
        protocol.content = _NoBody()
        instance = self.application(
            scope=scope, receive=receive.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        task = asyncio.ensure_future(instance)
        self.connections[protocol]["application_instance"] = task
        task.add_done_callback(partial(self._application_done, protocol))
        flow.task = task
        return receive

    # Daphne keeps an entry per request until a sweep once a second; under load that is
    # thousands of entries swept at once, a pause every visitor feels (p99 of 100+ ms).
    # Entries of requests that finished cleanly are dropped as soon as both sides are done;
    # the sweep still handles errors and timeouts.
    def _application_done(self, protocol: Any, task: asyncio.Future[Any]) -> None:
        details = self.connections.get(protocol)
        if details is not None and "disconnected" in details and _clean(task):
            del self.connections[protocol]

    def protocol_disconnected(self, protocol: Any) -> None:
        details = self.connections.get(protocol)
        if details is None:
            return
        details.setdefault("disconnected", time.time())
        task = details.get("application_instance")
        if task is not None and task.done() and _clean(task):
            del self.connections[protocol]

    def stop_listening(self) -> None:
        for port in self.ports:
            port.stopListening()
        self.ports.clear()
