"""Daphne, tuned for a relay.

`RelayServer` is Daphne's `Server` with three additions: each HTTP request gets a
`relay.proxy.flow.Flow` (backpressure and disconnect signal) in `scope["extensions"]`, each
WebSocket a `relay.proxy.ws_flow.WsFlow` (backpressure both ways, a bounded input queue); the
request parser is relay/edge/channel.py's (the relay's limits, answered with a JSON
message); and the listening ports are kept so a shutdown can stop accepting first.
"""

from __future__ import annotations

import daphne.server as daphne_server  # isort:skip  (installs the asyncio reactor first)

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import Any

from daphne.http_protocol import HTTPFactory, WebRequest
from django.conf import settings
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import Request as TwistedRequest

from relay.edge import plain_http, pool_upgrade
from relay.edge.channel import RelayHTTPChannel
from relay.edge.edge_settings import EdgeSettings
from relay.edge.reply import DirectReply
from relay.protocol import (
    BODY_CHUNK_BYTES,
    STATUS_CLASSES,
    TUNNEL_SCOPE_KEY,
)
from relay.proxy.flow import Flow
from relay.proxy.ws_flow import WsFlow
from relay.stats import STATS

logger = logging.getLogger(__name__)

http_request_init = TwistedRequest.__init__

# Twisted knows no reason phrase for some statuses the relay and apps send (421, 429, 431...)
# and writes "Unknown Status" in the status line: give it the standard phrase of each it lacks.
for _status in HTTPStatus:
    http.RESPONSES.setdefault(_status.value, _status.phrase.encode("ascii"))


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
        # Daphne's only other message is `http.disconnect` (the response is done, or the
        # visitor left): a flag, and a future while the app waits for it, not a queue per
        # request that nearly no request reads.
        self._gone = False
        self._waiter: asyncio.Future[None] | None = None

    def close(self) -> None:
        """Close the spooled body (a temporary file above 100 KB) when the request is done,
        not when a garbage collection breaks the cycle that holds it."""
        self._body_done = True
        self._body.close()

    def put_nowait(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.disconnect":
            self._gone = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

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
        while not self._gone:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return {"type": "http.disconnect"}


class RelayWebRequest(DirectReply, WebRequest):
    relay_flow: Flow | None = None
    # The tunnel its one Host header names, read once by relay/edge/channel.py.
    relay_one_host = False
    relay_tunnel: str | None = None

    def __init__(self, channel: http.HTTPChannel, *args: Any, **kw: Any) -> None:
        # Twisted's Request parses a POST's urlencoded or multipart body into `args` by
        # default, reading the whole spooled body into memory (and copies of it while it
        # parses) before the app runs: a 200 MiB form upload took the relay from 97 MB to
        # 910 MB. Nothing here reads `args`; the body stays in the spool and is streamed.
        kw["parsePOSTFormSubmission"] = False
        # Daphne's WebRequest.__init__, with Twisted's Request looked up once, not through
        # Twisted's deprecation proxy of its http module for each request.
        self.client_addr = None
        self.server_addr = None
        http_request_init(self, channel, *args, **kw)
        self.server = channel.factory.server
        self.application_queue = None
        self._response_started = False
        self.server.protocol_connected(self)

    def process(self) -> None:
        channel, transport = self.channel, self.transport
        if pool_upgrade.is_pool_upgrade(self):  # our lt's pool connection: not Daphne's
            pool_upgrade.upgrade(self)
            return
        if not self.requestHeaders.hasHeader(b"upgrade"):  # plain HTTP: no Deferreds
            plain_http.start(self)
            return
        super().process()  # Daphne's: a WebSocket is handed to its protocol
        if self.transport is None and transport is not None:  # Daphne took it for a WebSocket
            if isinstance(channel, RelayHTTPChannel):
                channel.hand_over(transport)

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:  # noqa: N802
        if self.relay_tunnel is not None:  # a tunnel's visitor: /metrics counts its class
            STATS.responses[code // 100 % STATUS_CLASSES] += 1
        super().setResponseCode(code, message)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 (Twisted's name)
        super().connectionLost(reason)
        if self.relay_flow is not None:
            self.relay_flow.disconnected()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        channel = self.channel
        if isinstance(channel, RelayHTTPChannel) and channel.body_over_limit(len(data)):
            return
        super().handleContentChunk(data)


class RelayHTTPFactory(HTTPFactory):
    protocol = RelayHTTPChannel

    def log(self, request: http.Request) -> None:
        # Twisted formats a combined-log line for every request and writes it to its legacy
        # log, which Daphne (verbosity 0, relay/run/runner.py) sends nowhere: a line built to
        # be thrown away. Only a log file Twisted was given would be read; the relay's own
        # access log is RELAY_ACCESS_LOG's (relay/access_log.py, docs/logs.md).
        if self.logPath:
            super().log(request)

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.edge = EdgeSettings.read()  # once per listener, not per request

    def buildProtocol(self, addr: Any) -> http.HTTPChannel:  # noqa: N802
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = RelayWebRequest
        if isinstance(protocol, RelayHTTPChannel):  # HTTP/2 (off in the relay) is Twisted's
            protocol.use(self.edge)
        return protocol


def _clean(task: asyncio.Future[Any]) -> bool:
    return task.cancelled() or task.exception() is None


class RelayServer(daphne_server.Server):
    def __init__(
        self,
        *args: Any,
        on_listen: Callable[[str, int], None] | None = None,
        ready_endpoints: dict[str, Any] | None = None,
        **kw: Any,
    ):
        # Listeners Daphne's endpoint strings cannot describe (runrelay's reloadable TLS):
        # a ready-made Twisted server endpoint under a name that stands in the endpoint list.
        self.ready_endpoints = dict(ready_endpoints or {})
        kw["endpoints"] = [*kw.get("endpoints", []), *self.ready_endpoints]
        super().__init__(*args, **kw)
        self.ports: list[Any] = []
        self.on_listen = on_listen
        self.listen_failure: BaseException | None = None  # why a listener could not start

    def run(self) -> None:
        # Daphne builds its factory from this module-level name inside run(), and its
        # endpoints from endpoint strings with the other.
        daphne_server.HTTPFactory = RelayHTTPFactory
        daphne_server.serverFromString = self._endpoint
        super().run()

    def _endpoint(self, reactor: Any, description: str) -> Any:
        ready = self.ready_endpoints.get(description)
        return ready if ready is not None else serverFromString(reactor, description)

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)
        host = port.getHost()
        if self.on_listen is not None:
            self.on_listen(host.host, host.port)

    def listen_error(self, failure: Any) -> None:
        # Daphne logs "Listen failure" and stops the reactor, and runrelay would exit 0:
        # keep the reason so runrelay says it in one line and exits non-zero.
        self.listen_failure = failure.value
        self.stop()

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket":
            return self._create_websocket_application(protocol, scope)
        if scope.get("type") != "http" or not isinstance(protocol, RelayWebRequest):
            return super().create_application(protocol, scope)
        # Daphne's own version, with a lazy body and a Flow in the scope.
        flow = Flow(protocol)
        protocol.relay_flow = flow
        receive = StreamingReceive(protocol.content)
        extensions = {"tunnelsite.flow": flow, "tunnelsite.body_length": receive.length}
        if protocol.relay_one_host:
            extensions[TUNNEL_SCOPE_KEY] = protocol.relay_tunnel
        scope["extensions"] = extensions
        scope.setdefault("asgi", {"version": "3.0"})
        protocol.content = _NoBody()
        if protocol not in self.connections:
            receive.close()
            return None
        instance = self.application(scope=scope, receive=receive.get, send=protocol.relay_send)
        task = asyncio.ensure_future(instance)
        self.connections[protocol]["application_instance"] = task
        task.add_done_callback(partial(self._http_done, protocol, receive))
        flow.task = task
        return receive

    def _http_done(self, protocol: RelayWebRequest, receive: StreamingReceive, task: Any) -> None:
        """The app's task of an HTTP request ended: close its body spool now, and break the
        request <-> flow cycle, so the request and everything it holds (its flow, task,
        headers, receive queue) are freed by refcount at once. Left to the cyclic collector,
        they made full collections of the whole heap about once a second under load, each
        a pause every visitor felt (tests/sockets/test_request_cycles.py)."""
        receive.close()
        flow = protocol.relay_flow
        if flow is not None:
            protocol.relay_flow = None  # nothing of the request runs any more to need it
            flow.task = None
        self._application_done(protocol, task)

    def _create_websocket_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        """Daphne's version, with a bounded input queue that is also the backpressure of
        the visitor's socket (relay.proxy.ws_flow) in place of Daphne's unbounded one."""
        flow = WsFlow(protocol, settings.RELAY_WS_BUFFER_BYTES)
        scope["extensions"] = {"tunnelsite.ws_flow": flow}
        scope.setdefault("asgi", {"version": "3.0"})
        if protocol not in self.connections:
            return None
        instance = self.application(
            scope=scope, receive=flow.get, send=partial(self.handle_reply, protocol)
        )
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return flow

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
