"""A visitor's HTTP response written without Daphne's reply handler, in one write.

Daphne's `handle_reply` answers each ASGI message through three layers: its server's
coroutine, its request's `handle_reply` (a Twisted module looked up through a deprecation
proxy on each call, a debug line, an action-log dict built for a logger the relay does not
have), then Twisted's `Request.write`, which writes the head as one transport write and the
body as another; and Twisted's transport holds every write until the loop's next turn (a
writer added, a turn, a send, the writer removed). That was a sixth of the relay's CPU per
small request.

`DirectReply.relay_send` is the ASGI `send` of a relay request. For the common response (a
status of 200 or more with a body, a Content-Length, a method other than HEAD) it builds the
head exactly as Twisted would (header names canonicalised and checked by Twisted's own
encoder, values with line breaks replaced as Twisted does, headers grouped by name in
first-seen order after any Twisted set, Daphne's `Server`), sends it with the first body
piece in one write, straight to the socket when nothing is queued before it, and finishes
the request as Daphne does. Anything else (another status, no Content-Length, HEAD, a
message out of order, a request already finished or gone, an action logger) is answered by
Daphne's own `handle_reply`, refusals included.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import NO_BODY_CODES, RESPONSES
from twisted.web.http import Request as TwistedRequest
from twisted.web.http_headers import (
    InvalidHeaderName,
    _nameEncoder,  # Twisted's header-name canonicaliser and check (Twisted is pinned)
    _sanitizeLinearWhitespace,
)

from relay.pool.write_now import write_now

_CONTENT_LENGTH = b"Content-Length"
_SERVER = b"Server"
_START = "http.response.start"
_BODY = "http.response.body"


def head_bytes(
    version: bytes,
    status: Any,
    headers: Any,
    preset: Any,
    server_name: bytes,
) -> bytes | None:
    """The status line and headers Twisted would write for this response, or None when
    Twisted's own path must answer it (see the module's docstring). `preset`: the Twisted
    Headers already on the request (`Connection: close` from its persistence check)."""
    if type(status) is not int or status < 200 or status in NO_BODY_CODES:
        return None
    present = preset._rawHeaders  # Twisted's own dict (Twisted is pinned); usually empty
    grouped: dict[bytes, list[bytes]] = (
        {name: list(values) for name, values in present.items()} if present else {}
    )
    try:
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                return None  # Daphne refuses it with a 500
            if b"\r" in value or b"\n" in value:
                value = _sanitizeLinearWhitespace(value)
            grouped.setdefault(_nameEncoder.encode(name), []).append(value)
    except (InvalidHeaderName, TypeError, ValueError):
        return None  # Daphne's path raises the same
    if _CONTENT_LENGTH not in grouped:
        return None  # Twisted chunks it (HTTP/1.1) or closes after it (HTTP/1.0)
    if server_name and _SERVER not in grouped:
        grouped[_SERVER] = [server_name]
    parts = [version, b" %d " % status, RESPONSES.get(status, b"Unknown Status"), b"\r\n"]
    for name, values in grouped.items():
        for value in values:
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class DirectReply:
    """For relay/edge/server.py's RelayWebRequest (a Daphne WebRequest): its `send`."""

    # Daphne's and Twisted's, set on the request by them.
    server: Any
    channel: Any
    finished: int
    clientproto: bytes
    method: bytes
    responseHeaders: Any  # noqa: N815 (Twisted's name)
    lastModified: Any  # noqa: N815
    etag: Any
    cookies: list[bytes]
    startedWriting: int  # noqa: N815
    sentLength: int  # noqa: N815
    _response_started: bool
    _disconnected: bool

    # The response head while the direct path has it and has not written it; None before.
    _relay_head: bytes | None = None
    # Daphne's path answers this response (it was not one the direct path takes).
    _relay_daphne = False

    async def relay_send(self, message: dict[str, Any]) -> None:
        server = self.server
        details = server.connections.get(self)
        if details is None or details.get("disconnected"):
            return  # as Daphne: the visitor is gone
        if not self._relay_daphne and not self.finished and self.channel is not None:
            kind = message.get("type")
            if kind == _BODY and self._relay_head is not None:
                self._relay_body(message)
                return
            if kind == _START and not self._response_started and self._direct_start(message):
                return
            self._relay_daphne = self._relay_head is None  # a message out of order: Daphne's
        await server.handle_reply(self, message)

    def _direct_start(self, message: dict[str, Any]) -> bool:
        server = self.server
        if (
            server.action_logger is not None
            or self.method == b"HEAD"
            or self.lastModified is not None
            or self.etag is not None
            or self.cookies
        ):
            return False
        status = message.get("status")
        name = server.server_name
        head = head_bytes(
            self.clientproto,
            status,
            message.get("headers", ()),
            self.responseHeaders,
            name.encode() if name else b"",
        )
        if head is None:
            return False
        self._response_started = True
        self.setResponseCode(status)  # type: ignore[attr-defined]  # the request's: /metrics counts it
        self._relay_head = head
        return True

    def _relay_body(self, message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        if self._disconnected:  # (Daphne's server marks it gone first: relay_send returns)
            return
        if not self.startedWriting:
            self.startedWriting = 1
            self.sentLength += len(body)
            write_now(self.channel.transport, self._relay_head + body)
        elif body:
            self.sentLength += len(body)
            write_now(self.channel.transport, body)
        if not message.get("more_body", False):
            self.finish()

    def finish(self) -> None:
        """Daphne's `WebRequest.finish`, with Twisted's `Request.finish` looked up once (not
        through Twisted's deprecation proxy of its http module on every call)."""
        if self.application_queue:  # type: ignore[attr-defined]
            self.send_disconnect()  # type: ignore[attr-defined]
        TwistedRequest.finish(self)  # type: ignore[arg-type]
        self.server.protocol_disconnected(self)
