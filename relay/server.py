"""Daphne, tuned for a relay.

`RelayServer` is Daphne's `Server` with three additions: each HTTP request gets a
`relay.flow.Flow` (backpressure and disconnect signal) in `scope["extensions"]`; the
request parser answers oversize heads with 431/414 and a JSON message instead of Twisted's
bare 400; and the listening ports are kept so a shutdown can stop accepting first.
"""

from __future__ import annotations

import daphne.server as daphne_server  # isort:skip  (installs the asyncio reactor first)

import json
import logging
from collections.abc import Callable
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
        flow = None
        if scope.get("type") == "http" and isinstance(protocol, RelayWebRequest):
            flow = Flow(protocol)
            protocol.relay_flow = flow
            scope["extensions"] = {"tunnelsite.flow": flow}
        queue = super().create_application(protocol, scope)
        if flow is not None and queue is not None and flow.task is None:
            flow.task = self.connections[protocol].get("application_instance")
        return queue

    def stop_listening(self) -> None:
        for port in self.ports:
            port.stopListening()
        self.ports.clear()
