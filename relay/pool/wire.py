"""The common exchange on a pool socket, framed without h11's state machine.

Most exchanges are a request with a Content-Length (or no body) and an HTTP/1.1 answer with
one Content-Length: for those the request head is written as bytes (what h11's writer
writes: Host first, then the headers as given), the response head is parsed with h11's own
grammar (its status-line and header-field expressions, its header normalisation), and the
body passes through as it arrives instead of being copied into and out of h11's buffer.

Anything else is h11's: a request that is HEAD, CONNECT, chunked or names a Connection
header is sent with h11 from the start (relay/pool/socket.py), and a response this module
does not take as common (a 1xx, 204, 304, HTTP/1.0, chunked, close-delimited, several or
odd Content-Lengths, a Connection header, obs-fold, bare LF line ends, anything its grammar
refuses, a head past the size limit) is handed to h11 untouched (`FALLBACK`), with the
request replayed into it (`shadow`), so h11 accepts or refuses it exactly as before. What
this module accepts, h11 accepts with the same event (tests/unit/test_pool_wire.py checks
it against h11 with hypothesis).
"""

from __future__ import annotations

import re
from typing import Final

import h11
from h11._abnf import header_field, status_line  # h11's grammar, pinned with h11
from h11._headers import CONTENT_LENGTH_MAX_DIGITS  # a longer value is h11's to refuse

# The grammar h11's reader validates a response head with (h11/_readers.py).
_STATUS_LINE = re.compile(status_line.encode("ascii"))
_HEADER_FIELD = re.compile(header_field.encode("ascii"))
# h11's end of a head: the first blank line, CRLF or bare LF (h11/_receivebuffer.py).
_BLANK_LINE = re.compile(rb"\n\r?\n")
_END = b"\r\n\r\n"  # the end of a common head: every line ends with CRLF
_BODILESS = frozenset({204, 304})  # h11's too (and never reused on a raw pipe: reuse.py)
# Request methods whose answer is framed otherwise (HEAD: no body; CONNECT: a tunnel).
_H11_METHODS = frozenset({b"HEAD", b"CONNECT"})


class Fallback:
    """A response head that is not the common case: h11 parses the whole response."""


FALLBACK: Final = Fallback()


class Head:
    """A common response head: the event, its length on the wire and its body's length."""

    __slots__ = ("response", "size", "length")

    def __init__(self, response: h11.Response, size: int, length: int) -> None:
        self.response = response
        self.size = size
        self.length = length


class Exchange:
    """One request and response on the fast path: how much of each is still to come."""

    __slots__ = ("request", "request_left", "response_left", "ended", "broken")

    def __init__(self, request: h11.Request, length: int) -> None:
        # Replayed into h11 if the answer is not common (`shadow`); dropped once its head is
        # read, so an idle socket holds no request.
        self.request: h11.Request | None = request
        self.request_left = length  # request body bytes still to send
        self.response_left = -1  # response body bytes still to come; -1: before the head
        self.ended = False  # the response's end was handed out
        self.broken = False  # a send was refused: the socket serves no more

    @property
    def done(self) -> bool:
        """Both sides ended cleanly (h11's DONE, DONE)."""
        return self.ended and self.request_left == 0 and not self.broken

    def body(self, data: bytes) -> None:
        """Count `data` against the request's Content-Length, as h11's writer does."""
        if len(data) > self.request_left:
            self.broken = True
            raise h11.LocalProtocolError("Too much data for declared Content-Length")
        self.request_left -= len(data)

    def end(self) -> None:
        if self.request_left:
            self.broken = True
            raise h11.LocalProtocolError("Too little data for declared Content-Length")


def request_head(request: h11.Request) -> tuple[bytes, int] | None:
    """The head of a request the fast path may carry, as h11's writer writes it (Host first:
    h11/_writers.py), and its body's length; None when h11 carries it."""
    if request.method in _H11_METHODS or request.http_version != b"1.1":
        return None
    length = 0
    host: list[bytes] = []
    lines: list[bytes] = []
    for name, value in request.headers.raw_items():
        lower = name.lower()
        if lower == b"host":
            host += (name, b": ", value, b"\r\n")
            continue
        if lower == b"content-length":
            length = int(value)  # h11.Request checked it: digits, and one value
        elif lower == b"transfer-encoding" or lower == b"connection":
            return None
        lines += (name, b": ", value, b"\r\n")
    start = b"%s %s HTTP/1.1\r\n" % (request.method, request.target)
    return b"".join((start, *host, *lines, b"\r\n")), length


def shadow(request: h11.Request, max_bytes: int) -> h11.Connection:
    """An h11 client connection (its head limit `max_bytes`) that has sent `request`, without
    its body: the response's framing depends on the method and the keep-alive, not on the
    request's body."""
    headers = [
        (name, value)
        for name, value in request.headers.raw_items()
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_bytes)
    conn.send(h11.Request(method=request.method, target=request.target, headers=headers))
    conn.send(h11.EndOfMessage())
    return conn


def parse_head(data: bytes, max_bytes: int) -> Head | Fallback | None:
    """The common response head at the start of `data`, FALLBACK for anything else, or None
    while the head is still incomplete (and within `max_bytes`, h11's limit on it)."""
    if not data:
        return None
    if data[:1] < b"!":  # h11 refuses this at once (and an empty line before the head)
        return FALLBACK
    match = _BLANK_LINE.search(data, 0, max_bytes + 2)
    if match is None:
        return FALLBACK if len(data) > max_bytes else None
    size = match.end()
    if size > max_bytes or not data.endswith(_END, 0, size):  # bare LF line ends: h11's
        return FALLBACK
    lines = data[: size - len(_END)].split(b"\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None or status["http_version"] != b"1.1":
        return FALLBACK
    code = int(status["status_code"])
    if code < 200 or code in _BODILESS:
        return FALLBACK
    headers: list[tuple[bytes, bytes]] = []
    length = -1
    for line in lines[1:]:
        field = _HEADER_FIELD.fullmatch(line)  # refuses bare CR, bare LF, NUL, obs-fold
        if field is None:
            return FALLBACK
        name = field["field_name"]
        value = field["field_value"]
        lower = name.lower()
        if lower == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
                return FALLBACK
            length = int(value)
        elif lower == b"transfer-encoding" or lower == b"connection":
            return FALLBACK
        headers.append((name, value))
    if length < 0:  # close-delimited: h11's
        return FALLBACK
    reason = status["reason"]
    response = h11.Response(
        headers=headers,
        status_code=code,
        reason=b"" if reason is None else reason,
        http_version=b"1.1",
        _parsed=True,  # validated above with h11's grammar, as h11's reader does
    )
    return Head(response, size, length)
