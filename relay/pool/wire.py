"""The common exchange on a pool socket, framed without h11's state machine.

Most exchanges are a request with a Content-Length (or no body) and an HTTP/1.1 answer with
one Content-Length: for those the request head is written as bytes (what h11's writer
writes: Host first, then the headers as given), the response head is parsed with h11's own
grammar (its status-line and header-field expressions, its header normalisation), and the
body passes through as it arrives instead of being copied into and out of h11's buffer.
The request event every upstream is sent (`request_event`, relay/proxy/exchange.py) is made
here too: h11.Request's checks, in one pass over its headers.

Anything else is h11's: a request that is HEAD, CONNECT, chunked or names a Connection
header is sent with h11 from the start (relay/pool/socket.py), and a response this module
does not take as common (a 1xx, 204, 304, HTTP/1.0, chunked, close-delimited, several or
odd Content-Lengths, a Connection header, obs-fold, bare LF line ends, anything its grammar
refuses, a head past the size limit) is handed to h11 untouched (`FALLBACK`), with the
request replayed into it (`shadow`), so h11 accepts or refuses it exactly as before. What
this module accepts, h11 accepts with the same event (tests/unit/test_pool_wire.py and
tests/unit/test_request_event.py check it against h11 with hypothesis).
"""

from __future__ import annotations

import re
from typing import Final

import h11

# h11's grammar and its header list, pinned with h11 (pyproject.toml)
from h11._abnf import field_name, http_version, method, request_target, status_code
from h11._headers import CONTENT_LENGTH_MAX_DIGITS, Headers  # a longer value is h11's to refuse

# h11's grammar (h11/_abnf.py), in forms that match the same bytes with less backtracking
# (tests/unit/test_pool_wire.py checks each against h11's own expression with hypothesis):
# - a header field's `OWS field-value OWS` and a status line's reason-phrase are any run of
#   bytes but NUL, CR, LF, VT and FF (h11's `[^\x00\s]` and `[ \t]` in any order);
# - a field-value alone is empty, or such a run that starts and ends with neither space
#   nor tab (h11's `field_content`: field-vchars with blanks only between them).
_TEXT = r"[^\x00\n\r\x0b\x0c]*"
_FIELD_VALUE = r"(?:[^\x00\s](?:[^\x00\n\r\x0b\x0c]*[^\x00\s])?)?"
# A whole response head but its last CRLF CRLF, as h11's reader checks it line by line
# (status-line, then header-field lines: h11/_readers.py).
_RESPONSE_HEAD = re.compile(
    (
        rf"{http_version} (?P<status_code>{status_code})(?: (?P<reason>{_TEXT}))?"
        rf"(?:\r\n{field_name}:{_TEXT})*"
    ).encode("ascii")
)
# A request's headers as h11.Request checks them (field-name, field-value: h11/_headers.py),
# all at once: each name and value joined with NUL, the pairs with LF. Neither byte can
# stand in a valid name or value, so a full match with one LF fewer than there are pairs
# means that every name and every value matched on its own.
_REQUEST_HEADERS = re.compile(
    rf"{field_name}\x00{_FIELD_VALUE}(?:\n{field_name}\x00{_FIELD_VALUE})*".encode("ascii")
)
_METHOD = re.compile(method.encode("ascii"))
_TARGET = re.compile(request_target.encode("ascii"))
# h11's end of a head: the first blank line, CRLF or bare LF (h11/_receivebuffer.py).
_BLANK_LINE = re.compile(rb"\n\r?\n")
_END = b"\r\n\r\n"  # the end of a common head: every line ends with CRLF
_BODILESS = frozenset({204, 304})  # h11's too (and never reused on a raw pipe: reuse.py)
# Request headers h11 rewrites (Content-Length, Transfer-Encoding) or counts (Host), and
# the ones that take a request off the fast path (Connection).
_REQUEST_SPECIAL = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})
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


def request_event(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> h11.Request | None:
    """`h11.Request(method=method, target=target, headers=headers)`, the same event, checked
    with h11's grammar in one pass over the headers; None where h11 must decide: a request
    it refuses (h11 then raises the same error as ever), or one with a header it would
    rewrite (several Content-Lengths, a Transfer-Encoding other than `chunked`).
    `headers` are bytes, as an ASGI scope's are."""
    try:
        block = b"\n".join(map(b"\x00".join, headers))
    except TypeError:  # not bytes: h11's to convert or refuse
        return None
    if (
        _REQUEST_HEADERS.fullmatch(block) is None
        or block.count(b"\n") != len(headers) - 1
        or _METHOD.fullmatch(method) is None
        or _TARGET.fullmatch(target) is None
    ):
        return None
    items = []
    hosts = lengths = codings = 0
    for name, value in headers:
        lower = name.lower()
        if lower in _REQUEST_SPECIAL:
            if lower == b"host":
                hosts += 1
            elif lower == b"content-length":
                lengths += 1
                if not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
                    return None
            elif lower == b"transfer-encoding":
                codings += 1
                if value != b"chunked":
                    return None
        items.append((name, lower, value))
    if hosts != 1 or lengths > 1 or codings > 1:
        return None
    return _request(Headers(items), method, target)


def request_head(request: h11.Request) -> tuple[bytes, int] | None:
    """The head of a request the fast path may carry, as h11's writer writes it (Host first:
    h11/_writers.py), and its body's length; None when h11 carries it."""
    if request.method in _H11_METHODS or request.http_version != b"1.1":
        return None
    length = 0
    host: list[bytes] = []
    lines: list[bytes] = []
    for name, lower, value in request.headers._full_items:
        if lower in _REQUEST_SPECIAL:
            if lower == b"host":
                host += (name, b": ", value, b"\r\n")
                continue
            if lower != b"content-length":  # Transfer-Encoding, Connection
                return None
            length = int(value)  # h11.Request checked it: digits, and one value
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
    # Every line at once: the status line, then header fields (refusing bare CR, bare LF,
    # NUL and obs-fold, as h11 does).
    head = _RESPONSE_HEAD.fullmatch(data, 0, size - len(_END))
    if head is None or head["http_version"] != b"1.1":
        return FALLBACK
    code = int(head["status_code"])
    if code < 200 or code in _BODILESS:
        return FALLBACK
    items: list[tuple[bytes, bytes, bytes]] = []
    length = -1
    lines = data[: size - len(_END)].split(b"\r\n")
    for line in lines[1:]:
        # Matched as `field-name ":" OWS field-value OWS`: the name ends at the first colon
        # (a token has none), and the value is the rest without its blanks.
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        lower = name.lower()
        if lower == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > CONTENT_LENGTH_MAX_DIGITS:
                return FALLBACK
            length = int(value)
        elif lower == b"transfer-encoding" or lower == b"connection":
            return FALLBACK
        items.append((name, lower, value))
    if length < 0:  # close-delimited: h11's
        return FALLBACK
    reason = head["reason"]
    # status 200-999: h11's range for a Response
    response = _response(Headers(items), code, b"" if reason is None else reason)
    return Head(response, size, length)


# h11's events made as h11's own constructors make them (`object.__setattr__` on a frozen
# dataclass), without checking their fields again: the callers checked them with h11's
# grammar and rules (tests/unit/test_pool_wire.py compares the events with h11's). h11's
# constructors check a list of headers once more and walk it through `Sequence.__iter__`.
_set = object.__setattr__


def _request(headers: Headers, method: bytes, target: bytes) -> h11.Request:
    event = object.__new__(h11.Request)
    _set(event, "headers", headers)
    _set(event, "method", method)
    _set(event, "target", target)
    _set(event, "http_version", b"1.1")
    return event


def _response(headers: Headers, status_code: int, reason: bytes) -> h11.Response:
    event = object.__new__(h11.Response)
    _set(event, "headers", headers)
    _set(event, "http_version", b"1.1")
    _set(event, "reason", reason)
    _set(event, "status_code", status_code)
    return event


def data_event(data: bytes) -> h11.Data:
    """`h11.Data(data=data)`: a piece of a body, not a chunk's start or end."""
    event = object.__new__(h11.Data)
    _set(event, "data", data)
    _set(event, "chunk_start", False)
    _set(event, "chunk_end", False)
    return event


# The end of a message without trailers, one event for every exchange (h11's events are
# frozen): h11's constructor checks its empty list of trailers each time it is made.
END_OF_MESSAGE: Final = h11.EndOfMessage()
