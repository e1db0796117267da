"""The visitor's HTTP connection: Twisted's HTTP channel with the relay's limits.

Request heads have a size, a line length, a header count and a deadline; bodies a size
(the relay's, or the tunnel's plan's) and a minimum pace; framing that proxies disagree on
is refused; each visitor address holds a bounded number of connections. Each refusal is an
answer with a JSON message, never Twisted's bare 400. relay/edge/server.py puts this
channel under Daphne. Here: the request head and the assembly; the body's checks are
relay/edge/body.py's, the connections per address relay/edge/addresses.py's.
"""

from __future__ import annotations

import daphne.server  # noqa: F401  isort:skip  (installs the asyncio reactor first)

import json
import logging
import re
from typing import Any

from twisted.internet import reactor as twisted_reactor
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http

from relay.edge.addresses import AddressLimit, release_address
from relay.edge.admission import body_limit_for, no_tunnel_anywhere, tunnel_for
from relay.edge.body import RequestBody
from relay.edge.edge_settings import EdgeSettings
from relay.edge.idle import IdleTimer
from relay.edge.trailers import StrictChunkedDecoder, field_line_problem

logger = logging.getLogger(__name__)

# Twisted declares the reactor's methods on zope interfaces, without `self`: mypy cannot call
# them through those types, so the reactor is untyped here (the Twisted boundary).
reactor: Any = twisted_reactor


def _reject(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


# What Twisted's refusals say (`_respondToBadRequestAndDisconnect`): it does not tell which.
MALFORMED = (
    "The request is not valid HTTP/1.1: check its request line, its header lines and its "
    "body's framing (Content-Length or chunked)."
)


# A TLS record of a handshake (content type 22, protocol version 3.x) where a request line
# should start: a client speaking https to the plain port.
_TLS_HANDSHAKE = b"\x16\x03"
TLS_ON_PLAIN_PORT = (
    "This port speaks plain HTTP and a TLS handshake arrived: use http:// for it, or the "
    "relay's https port."
)


# `http://host/path` (absolute-form, RFC 9112 section 3.2.2): accepted only when it names
# the same host as the Host header, and then rewritten to the origin-form `/path`.
_ABSOLUTE_FORM = re.compile(rb"^https?://([^/?#]*)(.*)$", re.IGNORECASE)


class RelayHTTPChannel(IdleTimer, RequestBody, AddressLimit):
    """Twisted's HTTP channel with the relay's limits and clear answers when they bite.

    Twisted already refuses most ambiguous framing (see tests/hardening); on top of that
    this channel refuses obs-fold, bare-LF line endings, any Transfer-Encoding but
    `chunked`, and an absolute-form target naming another host than Host; and it gives
    each request head a deadline (`RELAY_HEADER_TIMEOUT_S`, against slowloris) that bytes
    do not extend, unlike Twisted's idle timeout (`RELAY_IDLE_TIMEOUT_S`).
    """

    # What it checks against, read once per listener (relay/edge/edge_settings.py): given
    # by the factory (relay/edge/server.py) before the connection is made.
    edge: EdgeSettings

    def __init__(self) -> None:
        super().__init__()
        self._rejected = False
        self._body_limit = 0  # bytes allowed in the current request's body; 0: no limit
        self._body_seen = 0
        self._chunked_wire = -1  # bytes of the current chunked body on the wire; -1: none
        self._head_deadline: Any = None  # a Twisted DelayedCall while a head is awaited
        self._head_started = False  # bytes of the awaited head have arrived
        self._body_deadline: Any = None  # a Twisted DelayedCall while a body is read
        self._body_started = 0.0
        self._body_allowed = 0.0  # seconds: the grace period, plus the pace of bytes read
        self._address: str | None = None  # counted while open (relay/edge/addresses.py)
        # The visitor's and the relay's addresses, asked of the transport once per
        # connection: Twisted asks for both for each request, and makes new objects each time.
        self._peer: Any = None
        self._host: Any = None
        self._secure: bool | None = None
        # The protocol this connection was upgraded to (relay/edge/pool_upgrade.py): bytes
        # that arrived with the upgrade's head are its, not a next request's.
        self.relay_upgraded: Any = None

    def use(self, edge: EdgeSettings) -> None:
        """Check this connection's requests against `edge` (the factory calls it at once)."""
        self.edge = edge
        self.totalHeadersSize = edge.max_header_bytes
        self.maxHeaders = edge.max_header_count
        self.MAX_LENGTH = max(edge.max_header_bytes, edge.max_request_line_bytes)
        # Twisted's idle timeout: each byte resets it; off while a request is answered.
        self.timeOut = edge.idle_timeout_s  # type: ignore[assignment]  # a float works

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        # Responses go out in more than one write; Nagle would hold the last one back.
        transport: Any = self.transport  # zope-typed (see `reactor`), never None once made
        transport.setTcpNoDelay(True)
        if not self._admit_address():
            return
        self._start_head_deadline()

    def getPeer(self) -> Any:  # noqa: N802 (Twisted's name)
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def getHost(self) -> Any:  # noqa: N802
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def isSecure(self) -> bool:  # noqa: N802
        # Asked for each request (Daphne's scheme); Twisted asks zope whether the transport
        # provides TLS each time. A connection's transport never changes.
        if self._secure is None:
            self._secure = bool(super().isSecure())
        return self._secure

    def hand_over(self, transport: Any) -> None:
        self.stop_idle()  # the WebSocket's protocol owns the connection now
        super().hand_over(transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._stop_head_deadline()
        self._stop_body_deadline()
        if self._address is not None:
            release_address(self._address)
            self._address = None
        super().connectionLost(reason)

    # --- the head deadline ------------------------------------------------------------------
    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            delay = self.edge.header_timeout_s
            self._head_deadline = reactor.callLater(delay, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None
        self._head_started = False

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._rejected or self.transport is None:
            return
        if self._head_started:
            limit = self.edge.header_timeout_s
            self._refuse(
                408, "Request Timeout", f"The request head did not arrive within {limit:g} s."
            )
        else:  # a connection that never started a request: close it quietly
            self._rejected = True
            self.transport.abortConnection()

    # --- parsing ----------------------------------------------------------------------------
    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._rejected = True
        self._stop_head_deadline()
        self._stop_body_deadline()
        transport: Any = self.transport  # zope-typed (see `reactor`)
        transport.write(_reject(status, reason, message))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 (Twisted's name)
        """Twisted's own refusals (a request line or header line it cannot parse, a
        Content-Length or chunk it will not frame by): the relay's JSON 400 instead of
        Twisted's bare one, and nothing after it. Twisted's left the rest of the head
        unread, where a check here then found a second reason and wrote a second answer
        on the same connection (a malformed request line got two 400s)."""
        if not self._rejected:
            self._refuse(400, "Bad Request", MALFORMED)

    def _on_first_line(self) -> bool:
        return bool(getattr(self, "_HTTPChannel__first_line", 0))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._rejected:
            return
        if self.line_mode:
            self._head_started = True  # bytes of a head; allHeadersReceived resets it
            if data[:2] == _TLS_HANDSHAKE and not self._buffer and self._on_first_line():
                # Every TLS ClientHello holds an LF byte somewhere: it was refused as "Lines
                # must end with CRLF", which sent a user looking at their line endings.
                self._refuse(400, "Bad Request", TLS_ON_PLAIN_PORT)
                return
        if self._busyReceiving:
            # Re-entered from this channel's own parsing: a request answered at once (a
            # refused pool upgrade, Daphne's 400 page) gives the bytes after it back through
            # Twisted's setLineMode. LineReceiver only buffers them here; the outer call
            # parses them, and its checks see them then, once.
            super().dataReceived(data)
            return
        super().dataReceived(data)
        transport: Any = self.transport  # zope-typed (see `reactor`)
        if not self.line_mode or self._rejected or transport is None or transport.disconnecting:
            return  # raw bytes, or refused, or an answer at once closed the connection
        # Lines end in CRLF; a bare LF left in the unfinished line means LF line endings.
        if b"\n" in self._buffer:
            self._refuse(400, "Bad Request", "Lines must end with CRLF.")
        elif self._head_started or self._buffer:
            # This read left a head incomplete: its deadline runs from now, the read of its
            # first byte (armed already by an earlier read of it, or at connect, it stays:
            # bytes never extend it). A head that came whole in one read, as nearly every
            # one does, needs no timer at all. A head begun after one answered at once in
            # the same read (Daphne's 400 page) counts too: its lines set the flag again
            # after that request's allHeadersReceived cleared it, or its first line is
            # still unfinished in the buffer.
            self._head_started = True  # so its deadline answers 408, not a quiet close
            self._start_head_deadline()

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.relay_upgraded is not None:
            self.relay_upgraded.dataReceived(data)
            return
        super().rawDataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if self._rejected:
            return
        if line:
            self._head_started = True  # a line of a head; allHeadersReceived resets it
        first = self._on_first_line()
        if first and len(line) > self.edge.max_request_line_bytes:
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
        problem = "" if first else field_line_problem(line, "header line")
        if problem:  # a trailer line gets the same (relay/edge/trailers.py)
            self._refuse(400, "Bad Request", problem)
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
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and value.strip(b" \t").lower() != b"chunked":
            # Twisted ignores `identity`; a proxy in front might not. Only chunked is clear.
            self._refuse(400, "Bad Request", "Transfer-Encoding must be exactly chunked.")
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self) -> None:  # noqa: N802
        self._stop_head_deadline()
        problem = self._target_problem()
        if problem:
            self._refuse(400, "Bad Request", problem)
            return
        # A body over the limit is refused before it is read: Twisted would otherwise spool
        # all of it to disk first. Returning here also skips Twisted's 100 Continue.
        edge = self.edge
        name, tunnel = tunnel_for(self.requests[-1], edge.domain)
        if name is not None and tunnel is None and self.length != 0 and no_tunnel_anywhere():
            # Its body would be spooled in full only to be answered 404: refuse it now.
            self._refuse(404, "Not Found", f"There is no tunnel called {name!r} on this relay.")
            return
        self._body_limit = body_limit_for(tunnel, edge.max_body_bytes)
        if name is None:  # the site's own pages take small bodies (site_max_body_bytes)
            site = edge.site_max_body_bytes
            self._body_limit = min(self._body_limit or site, site)
        self._body_seen = 0
        self._chunked_wire = 0 if self.length is None else -1
        if self.length is None and isinstance(self._transferDecoder, http._ChunkedTransferDecoder):
            # Its trailer lines checked like the head's (relay/edge/trailers.py).
            self._transferDecoder = StrictChunkedDecoder(
                self._transferDecoder, self._refuse, edge.max_header_bytes, edge.max_header_count
            )
        if self._body_limit and self.length is not None and self.length > self._body_limit:
            self._refuse_body()
            return
        if self.length != 0:  # a body follows (None: chunked)
            self._start_body_deadline()
        super().allHeadersReceived()

    def _target_problem(self) -> str:
        """Why the request target cannot be forwarded, or "" (absolute-form is rewritten)."""
        # Twisted infers `_path` as a Request (it reuses a variable name); it is the target.
        target: bytes = self._path  # type: ignore[assignment]
        if target.startswith(b"/") or (target == b"*" and self._command == b"OPTIONS"):
            return ""
        match = _ABSOLUTE_FORM.match(target)
        if match is None:
            return "The request target must be a path."
        hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) != 1 or match.group(1).lower() != hosts[0].lower():
            return "The request target names another host than the Host header."
        rest = match.group(2)
        self._path = rest if rest.startswith(b"/") else b"/" + rest  # type: ignore[assignment]
        return ""

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        if self._on_first_line():
            self._refuse(414, "URI Too Long", "The request line is too long.")
        else:
            self._refuse(431, "Request Header Fields Too Large", "A header line is too long.")
