"""Sans-IO reading of the heads the fast path passes through as bytes (fast_path.py).

The fast path forwards a request head from the relay to the local app, and a response head
back, as the bytes that arrived, instead of parsing and re-framing them with h11. It takes
only the plain, common case, which it checks strictly: an HTTP/1.1 request with one Host,
no framing but at most one Content-Length and its whole body with the head; an HTTP/1.1
answer of 200-599 (not 204 or 304) framed by one Content-Length. Every byte of such a head
is checked against the grammar h11 applies, with a stricter character set; anything else
(chunked, upgrades, `Connection`, `Expect`, 1xx, HTTP/1.0, a bare LF, a header h11 would
read differently) is `None`, and the exchange gives those bytes to h11 as before.
tests/client/test_raw_head_vs_h11.py checks, with hypothesis and h11 as the oracle, that
whatever is read here h11 reads the same way, and that what is passed on means the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 9110 token (h11's `token`); a field value of visible ASCII and obs-text with inner
# spaces and tabs only (h11 allows more: controls, which then go to h11).
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"
_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9])(?: ([\x21-\x7e\x80-\xff \t]*))?")
_DIGITS = re.compile(rb"[0-9]{1,18}")  # 18 digits: an exabyte, and never a huge int parse

END = b"\r\n\r\n"

# Request headers that make h11's reading of a request anything but plain: its framing,
# its connection's fate, an upgrade, an interim answer asked for.
_REQUEST_H11_ONLY = frozenset(
    {b"transfer-encoding", b"connection", b"upgrade", b"expect", b"te", b"trailer"}
)
# Answer headers that only the slow path handles: chunked framing, a closing connection.
_RESPONSE_H11_ONLY = frozenset({b"transfer-encoding", b"connection", b"trailer"})
# The answer's headers that describe the connection to the local app, not the pool
# socket (exchange.py drops the same ones; `Connection` itself never reaches the fast path).
_LOCAL_ONLY = frozenset({b"keep-alive", b"proxy-connection"})
# Answers that carry no body whatever they say (RFC 9110 15.3.5, 15.4.5): the slow path's.
_BODILESS = frozenset({b"204", b"304"})


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    head: bytes  # what the local app gets: the head as it came, Host rewritten if asked
    headers: list[tuple[bytes, bytes]]  # (name as sent, value), for h11 when it takes over
    head_bytes: int  # bytes of the head as it came, with its blank line
    body_bytes: int  # the Content-Length (0 without one)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    head: bytes  # what the relay gets: without the local-only headers
    head_bytes: int  # bytes of the head as it came, with its blank line
    body_bytes: int


def _lines(data: bytes | bytearray, end: int) -> list[bytes] | None:
    """The head's lines; None if one ends in a bare LF or holds a stray CR."""
    head = bytes(data[:end])
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        return None
    return head.split(b"\r\n")


def _headers(lines: list[bytes]) -> list[tuple[bytes, bytes, bytes]] | None:
    """(name as sent, lowercased name, value) of each header line; None on any doubt."""
    out = []
    for line in lines:
        match = _HEADER.fullmatch(line)
        if match is None:
            return None  # obs-fold, a control byte, a space before the colon: h11's
        name, value = match.groups()
        out.append((name, name.lower(), value))
    return out


def _length(values: list[bytes]) -> int | None:
    if not values:
        return 0
    if len(values) > 1 or _DIGITS.fullmatch(values[0]) is None:
        return None
    return int(values[0])


def head_end(data: bytes | bytearray) -> int:
    """Where the head's blank line ends, or -1 if it has not arrived."""
    end = data.find(END)
    return end if end < 0 else end + len(END)


def request_head(
    data: bytes | bytearray, end: int, host: bytes | None = None
) -> RequestHead | None:
    """The request head in `data[:end]` (end: head_end's), if the fast path may take it;
    `host`: the value every Host header gets (--local-host)."""
    lines = _lines(data, end - len(END))
    if lines is None:
        return None
    request = _REQUEST_LINE.fullmatch(lines[0])
    headers = _headers(lines[1:])
    if request is None or headers is None:
        return None
    hosts = 0
    lengths = []
    for _, lower, value in headers:
        if lower in _REQUEST_H11_ONLY:
            return None
        if lower == b"host":
            hosts += 1
        elif lower == b"content-length":
            lengths.append(value)
    body = _length(lengths)
    if hosts != 1 or body is None:
        return None
    method, target = request.groups()
    if method == b"HEAD" or method == b"CONNECT":
        return None  # an answer without a body, or a tunnel: h11's
    if host is None:
        head = bytes(data[:end])
        pairs = [(name, value) for name, _, value in headers]
    else:
        pairs = [(name, host if lower == b"host" else value) for name, lower, value in headers]
        head = b"".join([lines[0], b"\r\n", *(n + b": " + v + b"\r\n" for n, v in pairs), b"\r\n"])
    return RequestHead(method, target, head, pairs, end, body)


def response_head(data: bytes | bytearray, end: int) -> ResponseHead | None:
    """The answer head in `data[:end]`, if the fast path may take it (see the module)."""
    lines = _lines(data, end - len(END))
    if lines is None:
        return None
    status = _STATUS_LINE.fullmatch(lines[0])
    headers = _headers(lines[1:])
    if status is None or headers is None or status.group(1) in _BODILESS:
        return None
    lengths = []
    drop = False
    for _, lower, value in headers:
        if lower in _RESPONSE_H11_ONLY:
            return None
        if lower == b"content-length":
            lengths.append(value)
        elif lower in _LOCAL_ONLY:
            drop = True
    if not lengths:
        return None  # close-delimited: h11's
    body = _length(lengths)
    if body is None:
        return None
    if drop:
        kept = (n + b": " + v + b"\r\n" for n, lower, v in headers if lower not in _LOCAL_ONLY)
        head = b"".join([lines[0], b"\r\n", *kept, b"\r\n"])
    else:
        head = bytes(data[:end])
    return ResponseHead(int(status.group(1)), head, end, body)
