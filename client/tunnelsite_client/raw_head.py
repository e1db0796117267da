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
# spaces and tabs only (h11 allows more: controls, which then go to h11). The header block
# is checked whole by one regex (each line ends in CRLF; no bare CR or LF fits it).
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"
_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE + rb")[ \t]*")
_BLOCK = re.compile(rb"(?:" + _TOKEN + rb":[ \t]*" + _VALUE + rb"[ \t]*\r\n)*")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9])(?: ([\x21-\x7e\x80-\xff \t]*))?")
_DIGITS = re.compile(rb"[0-9]{1,18}")  # 18 digits: an exabyte, and never a huge int parse

END = b"\r\n\r\n"
CRLF = b"\r\n"

# Request headers that make h11's reading of a request anything but plain: its framing,
# its connection's fate, an upgrade, an interim answer asked for.
_REQUEST_H11_ONLY = tuple(
    b"\r\n" + name + b":"
    for name in (b"transfer-encoding", b"connection", b"upgrade", b"expect", b"te", b"trailer")
)
# Answer headers that only the slow path handles: chunked framing, a closing connection.
_RESPONSE_H11_ONLY = tuple(
    b"\r\n" + name + b":" for name in (b"transfer-encoding", b"connection", b"trailer")
)
# The answer's headers that describe the connection to the local app, not the pool
# socket (exchange.py drops the same ones; `Connection` itself never reaches the fast path).
_LOCAL_ONLY = frozenset({b"keep-alive", b"proxy-connection"})
_LOCAL_ONLY_MARKS = tuple(b"\r\n" + name + b":" for name in _LOCAL_ONLY)
# Answers that carry no body whatever they say (RFC 9110 15.3.5, 15.4.5): the slow path's.
_BODILESS = frozenset({b"204", b"304"})
_HOST = b"\r\nhost:"
_LENGTH = b"\r\ncontent-length:"


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    head: bytes  # what the local app gets: the head as it came, Host rewritten if asked
    lowered: bytes  # the header lines, lowercased, each after a CRLF (for a quick look)
    head_bytes: int  # bytes of the head as it came, with its blank line
    body_bytes: int  # the Content-Length (0 without one)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """(name as sent, value) of each header of `head`, for h11 when it takes over."""
        return header_pairs(self.head)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    head: bytes  # what the relay gets: without the local-only headers
    head_bytes: int  # bytes of the head as it came, with its blank line
    body_bytes: int


def header_pairs(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each header line of a head this module took."""
    out = []
    for line in head.split(CRLF)[1:]:
        match = _HEADER.fullmatch(line)
        if match is not None:
            out.append((match.group(1), match.group(2)))
    return out


def _split(data: bytes | bytearray, end: int) -> tuple[bytes, bytes, bytes] | None:
    """The first line, the header block (its lines each ending in CRLF) and that block
    lowercased with a CRLF before it; None if the block is not plain header lines."""
    first = data.find(CRLF)
    block = bytes(data[first + len(CRLF) : end - len(CRLF)])
    if _BLOCK.fullmatch(block) is None:
        return None  # obs-fold, a control byte, a space before a colon, a bare LF: h11's
    return bytes(data[:first]), block, CRLF + block.lower()


def _length(lowered: bytes) -> int | None:
    """The one Content-Length's value (0 without one); None for several, or not digits."""
    at = lowered.find(_LENGTH)
    if at < 0:
        return 0
    start = at + len(_LENGTH)
    if lowered.find(_LENGTH, start) >= 0:
        return None
    value = lowered[start : lowered.find(CRLF, start)].strip(b" \t")
    return int(value) if _DIGITS.fullmatch(value) else None


def head_end(data: bytes | bytearray) -> int:
    """Where the head's blank line ends, or -1 if it has not arrived."""
    end = data.find(END)
    return end if end < 0 else end + len(END)


def request_head(
    data: bytes | bytearray, end: int, host: bytes | None = None
) -> RequestHead | None:
    """The request head in `data[:end]` (end: head_end's), if the fast path may take it;
    `host`: the value every Host header gets (--local-host)."""
    parts = _split(data, end)
    if parts is None:
        return None
    first, block, lowered = parts
    request = _REQUEST_LINE.fullmatch(first)
    if request is None or lowered.count(_HOST) != 1:
        return None
    if any(mark in lowered for mark in _REQUEST_H11_ONLY):
        return None
    body = _length(lowered)
    if body is None:
        return None
    method, target = request.groups()
    if method == b"HEAD" or method == b"CONNECT":
        return None  # an answer without a body, or a tunnel: h11's
    if host is None:
        head = bytes(data[:end])
    else:
        at = lowered.find(_HOST)  # in `block`, the line starts at `at` (CRLF before it)
        line_end = block.find(CRLF, at)
        line = block[at:line_end]
        name = line[: line.find(b":")]
        head = b"".join([first, CRLF, block[:at], name, b": ", host, block[line_end:], CRLF])
    return RequestHead(method, target, head, lowered, end, body)


def response_head(data: bytes | bytearray, end: int) -> ResponseHead | None:
    """The answer head in `data[:end]`, if the fast path may take it (see the module)."""
    parts = _split(data, end)
    if parts is None:
        return None
    first, block, lowered = parts
    status = _STATUS_LINE.fullmatch(first)
    if status is None or status.group(1) in _BODILESS or _LENGTH not in lowered:
        return None  # no Content-Length: close-delimited, h11's
    if any(mark in lowered for mark in _RESPONSE_H11_ONLY):
        return None
    body = _length(lowered)
    if body is None:
        return None
    if any(mark in lowered for mark in _LOCAL_ONLY_MARKS):
        kept = (
            line + CRLF
            for line in block.split(CRLF)[:-1]
            if line[: line.find(b":")].lower() not in _LOCAL_ONLY
        )
        head = b"".join([first, CRLF, *kept, CRLF])
    else:
        head = bytes(data[:end])
    return ResponseHead(int(status.group(1)), head, end, body)
