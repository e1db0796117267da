"""The access log (RELAY_ACCESS_LOG=true): one line per visitor request on `relay.access`.

Off by default: then the router checks one boolean per request (`HostRouter.access_log`,
read from the setting once at start) and nothing here runs. On, the visitor's `receive` and
`send` are wrapped to count the body bytes each way and keep the status, and one INFO line is
written when the request is over: an HTTP response when it completes (or is cut), a WebSocket
or a TCP connection when it ends.

The path is logged without its query string: a query string is where secrets usually travel
(`?token=`, signed links), and redaction cannot know them all. A text line reads like the
combined log format; the JSON format has the same values as fields (docs/logs.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from django.conf import settings

from relay.asgi_types import Message, Receive, Scope, Send
from relay.headers import client_ip
from relay.log_events import ACCESS

logger = logging.getLogger("relay.access")

# Read once, at import (after Django's setup): TCP visitors check it per connection.
ENABLED: bool = bool(getattr(settings, "RELAY_ACCESS_LOG", False))

Proxy = Callable[[Scope, Receive, Send, str], Awaitable[None]]

# The status of a WebSocket the relay closed before accepting: Daphne answers the handshake 403.
_WS_REFUSED = HTTPStatus.FORBIDDEN
# Where relay/edge/server.py puts a WebSocket's flow control (relay/proxy/ws_flow.py) in the scope.
WS_FLOW_KEY = "tunnelsite.ws_flow"


def line(
    kind: str,
    tunnel: str,
    method: str,
    path: str,
    status: int,
    bytes_in: int,
    bytes_out: int,
    started: float,
    visitor: str,
    end: str = "",
) -> None:
    """One line. `status` 0: no answer (the visitor left first; a TCP connection has none);
    `end`: how a TCP connection ended (closed, reset, or the relay's reason)."""
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    path = path.translate(_UNSAFE)  # a decoded %0A, %C2%85 or %E2%80%A8 must not start a line
    fields = {
        "event": ACCESS,
        "kind": kind,
        "tunnel": tunnel,
        "method": method,
        "path": path,
        "status": status,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "duration_ms": duration_ms,
        "visitor": visitor,
    }
    if end:
        fields["end"] = end
    logger.info(
        '%s %s "%s %s" %s %d %d %.1fms',
        (visitor or "-").translate(_TEXT_TOKEN),
        tunnel.translate(_TEXT_TOKEN),
        method.translate(_TEXT_TOKEN),
        (path or "-").translate(_TEXT_QUOTED),
        end.translate(_TEXT_TOKEN) if end else status,
        bytes_in,
        bytes_out,
        duration_ms,
        extra=fields,
    )


async def http(proxy: Proxy, scope: Scope, receive: Receive, send: Send, name: str) -> None:
    started = time.monotonic()
    status = 0  # 0: the visitor left before any answer
    got = sent = 0

    async def counting_receive() -> Message:
        nonlocal got
        message = await receive()
        if message["type"] == "http.request":
            got += len(message.get("body", b""))
        return message

    async def counting_send(message: Message) -> None:
        nonlocal status, sent
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
        elif kind == "http.response.body":
            sent += len(message.get("body", b""))
        await send(message)

    try:
        await proxy(scope, counting_receive, counting_send, name)
    finally:
        line(
            "http",
            name,
            scope["method"],
            scope["path"],
            status,
            got,
            sent,
            started,
            client_ip(scope),
        )


async def websocket(proxy: Proxy, scope: Scope, receive: Receive, send: Send, name: str) -> None:
    started = time.monotonic()
    status: int = 0
    got = sent = 0

    async def counting_receive() -> Message:
        nonlocal got
        message = await receive()
        if message["type"] == "websocket.receive":
            got += _size(message)
        return message

    async def counting_send(message: Message) -> None:
        nonlocal status, sent
        kind = message["type"]
        if kind == "websocket.send":
            sent += _size(message)
        elif kind == "websocket.accept":
            status = HTTPStatus.SWITCHING_PROTOCOLS
        elif kind == "websocket.http.response.start":
            status = message["status"]
        elif kind == "websocket.close" and status == 0:
            status = _WS_REFUSED
        await send(message)

    try:
        await proxy(scope, counting_receive, counting_send, name)
    finally:
        # A refusal (401, 403, 404, 429, 503, 504) is written on the socket by the flow
        # (relay/proxy/ws_flow.py WsFlow.refuse), past `send`: its status is the flow's.
        status = _refused_status(scope) or status
        line("websocket", name, "GET", scope["path"], status, got, sent, started, client_ip(scope))


def _refused_status(scope: Scope) -> int:
    """The status the handshake was refused with by the WebSocket's flow control, 0: none."""
    flow = scope.get("extensions", {}).get(WS_FLOW_KEY)
    status = getattr(flow, "refused_status", 0)
    return status if isinstance(status, int) else 0


def _escape(code: int) -> str:
    return "".join(f"%{byte:02X}" for byte in chr(code).encode("utf-8"))


# What a path may not carry into a line, written as the percent-escapes of its UTF-8 bytes
# (the path is decoded): control characters (Unicode category Cc: C0, DEL, and C1, whose
# U+0085 NEL `str.splitlines()` and many shippers break lines on and whose U+009B is an 8-bit
# CSI), the line and paragraph separators (Zl, Zp: U+2028, U+2029, also line breaks to
# splitlines), and the bidirectional overrides and isolates (U+202A-202E, U+2066-2069), which
# make a terminal or a viewer show a line's text in another order than it was written.
_UNSAFE = {
    code: _escape(code)
    for first, last in (
        ("\x00", "\x1f"),  # Cc: C0
        ("\x7f", "\x9f"),  # Cc: DEL and C1
        ("\u2028", "\u202e"),  # Zl, Zp, then LRE, RLE, PDF, LRO, RLO
        ("\u2066", "\u2069"),  # LRI, RLI, FSI, PDI
    )
    for code in range(ord(first), ord(last) + 1)
}  # tests/unit/test_access_log_lines.py checks it against unicodedata


def _hex_escape(code: int) -> str:
    return "".join(f"\\x{byte:02X}" for byte in chr(code).encode("utf-8"))


# The text line's fields, written so that it splits back into exactly the fields logged (as
# nginx writes its access log): inside the quoted request, `"` and `\` as `\x22` and `\x5C`
# (a quote in the path once closed the request early and forged the status and byte counts
# after it: `"GET /x" 200 99999 ...`); in the other fields, and the method, a space or any
# other white space too (`\x20`), as a space separates them. `\` is always an escape's start,
# so reading `\xHH` back is exact.
_TEXT_QUOTED = {ord('"'): _hex_escape(ord('"')), ord("\\"): _hex_escape(ord("\\"))}
_TEXT_QUOTED |= {code: _hex_escape(code) for code in _UNSAFE}
_TEXT_TOKEN = _TEXT_QUOTED | {
    code: _hex_escape(code) for code in range(0x3001) if chr(code).isspace()
}  # U+3000, the ideographic space, is the last white space character


def _size(message: Message) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    if text is None:
        return 0
    if text.isascii():  # one flag on the string: its length is its UTF-8 size, no copy
        return len(text)
    return len(text.encode("utf-8", "replace"))
