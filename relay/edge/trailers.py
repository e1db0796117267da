"""A chunked request body's trailer section, checked as strictly as its head.

Twisted's chunked decoder reads the trailer lines after the last chunk and drops them
unlooked-at: a bare LF, a NUL, a CR or a line without a colon passed. A proxy in front that
ends a line at a bare LF sees the trailer section end earlier than Twisted does, and reads
what Twisted swallowed as a trailer as a request of its own (request smuggling). The relay
forwards no trailer, but where the section ends must be the same for everyone: a trailer line
gets the head's rules (relay/edge/channel.py): no CR, LF or NUL inside it, no obs-fold, a
`name: value` with a token for a name, and the head's bounds on size and count.
"""

from __future__ import annotations

import daphne.server  # noqa: F401  isort:skip  (installs the asyncio reactor first)

import re
from collections.abc import Callable

from twisted.web import http

# RFC 9110 section 5.6.2: tchar.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def field_line_problem(line: bytes, what: str) -> str:
    """What a header line (after the request line) and a trailer line may not have, or "":
    CR, LF or NUL inside it (refused at once, however the bytes were split into packets;
    Twisted would refuse them in a head only when the next line arrives), or obs-fold (RFC
    9112 section 5.2: a server rejects it with 400, or unfolds it). `what` names the line."""
    if b"\n" in line or b"\r" in line or b"\x00" in line:
        return f"A {what} contains CR, LF or NUL."
    if line[:1] in (b" ", b"\t"):
        return f"Folded {what}s (obs-fold) are not allowed."
    return ""


def trailer_problem(line: bytes, complete: bool) -> str:
    """Why a trailer line (without its CRLF) cannot be taken, or "". `complete`: its CRLF
    has arrived; an incomplete line is checked for what is wrong already (a bare LF at once),
    a missing colon only once it ends."""
    problem = field_line_problem(line, "trailer line")
    if problem:
        return problem
    if complete:
        name, colon, _ = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            return "A trailer line is not a header field (name: value)."
    return ""


class StrictChunkedDecoder(http._ChunkedTransferDecoder):
    """Twisted's chunked decoder with its trailer lines checked (`trailer_problem`) and
    bounded like a head (`max_bytes`, `max_lines`). `refuse(status, reason, message)` answers
    the visitor; the decoder then raises Twisted's malformed-chunk error, which ends the
    request (the channel's own answer to it is skipped: one was given)."""

    def __init__(
        self,
        decoder: http._ChunkedTransferDecoder,
        refuse: Callable[[int, str, str], None],
        max_bytes: int,
        max_lines: int,
    ) -> None:
        super().__init__(decoder.dataCallback, decoder.finishCallback)
        self._refuse = refuse
        self._max_trailer_bytes = max_bytes
        self._max_trailer_lines = max_lines

    def _dataReceived_TRAILER(self) -> bool:  # noqa: N802 (Twisted's name)
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end == -1:
            # A line still arriving: without a CR that may be the first half of its CRLF.
            line = bytes(buffer[:-1] if buffer.endswith(b"\r") else buffer)
            self._check(line, complete=False, size=len(buffer))
        elif end > 0:
            self._check(bytes(buffer[:end]), complete=True, size=end + 2)
            if len(self._trailerHeaders) >= self._max_trailer_lines:
                self._fail(
                    431,
                    "Request Header Fields Too Large",
                    f"The chunked body has more than {self._max_trailer_lines} trailer lines.",
                )
        return bool(super()._dataReceived_TRAILER())

    def _check(self, line: bytes, complete: bool, size: int) -> None:
        problem = trailer_problem(line, complete)
        if problem:
            self._fail(400, "Bad Request", problem)
        if self._receivedTrailerHeadersSize + size > self._max_trailer_bytes:
            self._fail(
                431,
                "Request Header Fields Too Large",
                f"The chunked body's trailers are larger than {self._max_trailer_bytes} bytes.",
            )

    def _fail(self, status: int, reason: str, message: str) -> None:
        self._refuse(status, reason, message)
        raise http._MalformedChunkedDataError(message)
