"""The pool socket's fast path (relay/pool/wire.py) against h11 as the oracle, sans-IO.

The same `PoolSocket` runs every exchange twice: as it is (the common exchange without h11's
state machine) and with the fast path turned off (h11 frames and parses everything, as
before the fast path). For random requests and random valid and invalid responses, cut
into random reads, with and without the end of the stream, both must write the same bytes,
accept or refuse the same answers, hand out the same head and the same body bytes, and
agree on whether the socket may serve again and whether its client is distrusted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
from harness.socket_owner import Owner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.pool.errors import PoolError
from relay.pool.socket import PoolSocket
from relay.pool.wire import (
    END_OF_MESSAGE,
    FALLBACK,
    Head,
    data_event,
    parse_head,
    request_event,
)

MAX_HEAD = 16384


@dataclass
class Transport:
    """What the socket writes, kept (a sans-IO test: no socket under it)."""

    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str) -> Any:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class H11Only(PoolSocket):
    """The oracle: the same socket with every exchange framed and parsed by h11."""

    __slots__ = ()

    def _fast_request(self, request: h11.Request, parts: list[bytes]) -> None:
        return None


@dataclass
class Outcome:
    written: bytes = b""
    unsendable: bool = False
    heads: list[tuple[Any, ...]] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False
    failed: bool = False
    reusable: bool | None = None
    distrusted: bool = False


def run(
    kind: type[PoolSocket],
    events: list[h11.Event],
    reads: list[bytes],
    eof: bool,
    raw_pipe: bool,
    max_head: int,
) -> Outcome:
    owner = Owner("" if raw_pipe else "client-id")
    sock = kind(owner, max_head)
    transport = Transport()
    sock.connection_made(transport)  # type: ignore[arg-type]
    sock.busy = True
    outcome = Outcome()
    loop = asyncio.new_event_loop()
    try:
        try:
            sock.send(*events)
        except h11.LocalProtocolError:
            outcome.unsendable = True
        outcome.written = b"".join(transport.written)
        if outcome.unsendable:
            return outcome
        pending = list(reads)
        while not outcome.ended and not outcome.failed:
            try:
                # Timeout 0: the socket has every byte it will get until the next read.
                event = loop.run_until_complete(sock.next_event(0))
            except TimeoutError:
                if pending:
                    sock.data_received(pending.pop(0))
                    continue
                if eof and not sock._eof:
                    sock.eof_received()
                    continue
                break
            except (PoolError, h11.ProtocolError):
                outcome.failed = True
                break
            if isinstance(event, h11.Data):
                outcome.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                outcome.ended = True
            elif isinstance(event, (h11.Response, h11.InformationalResponse)):
                head = (type(event).__name__, event.status_code, event.reason)
                fields = (event.http_version, list(event.headers), event.headers.raw_items())
                outcome.heads.append((*head, *fields, type(event.reason)))
            else:
                outcome.heads.append((type(event).__name__,))
                break
        for data in pending:  # what the client sent past the end stays unread
            sock.data_received(data)
        if eof and not sock._eof:
            sock.eof_received()
        if outcome.ended:
            outcome.reusable = sock.finish_exchange(False)
        outcome.distrusted = owner.distrusted
    finally:
        loop.close()
    return outcome


# --- random requests ---------------------------------------------------------------------
TOKENS = st.sampled_from([b"X-A", b"accept", b"User-Agent", b"x-forwarded-for", b"Cookie"])
VALUES = st.sampled_from([b"1", b"text/html", b"a b", b"caf\xe9", b""])


@st.composite
def requests(draw: st.DrawFn) -> list[h11.Event]:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS"]))
    body = draw(st.binary(max_size=64))
    headers = [(draw(TOKENS), draw(VALUES)) for _ in range(draw(st.integers(0, 3)))]
    headers.insert(draw(st.integers(0, len(headers))), (b"Host", b"t.example"))
    framing = draw(st.sampled_from(["length", "length", "none", "chunked", "close", "wrong"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "wrong":
        headers.append(
            (b"Content-Length", str(max(len(body) + draw(st.integers(-1, 1)), 0)).encode())
        )
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    elif framing == "close":
        headers.append((b"Connection", b"close"))
    # As the relay makes it (in one pass, relay/pool/wire.py `request_event`) or as h11 does.
    made = request_event(method, b"/p?q=1", headers) if draw(st.booleans()) else None
    request = made or h11.Request(method=method, target=b"/p?q=1", headers=headers)
    events: list[h11.Event] = [request]
    if body and draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        events += [h11.Data(data=body[:cut]), h11.Data(data=body[cut:])]
    elif body or framing != "none":
        events.append(h11.Data(data=body))
    events.append(h11.EndOfMessage())
    return events


# --- random responses, mostly near the common case ----------------------------------------
STATUS_LINES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 500 ",
        b"HTTP/1.1 201",
        b"HTTP/1.1 204 No Content",
        b"HTTP/1.1 304 Not Modified",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.1 103 Early Hints",
        b"HTTP/1.1 999 Odd",
        b"HTTP/1.0 200 OK",
        b"HTTP/2.0 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1 200 caf\xe9",
        b"HTTP/1.1 200 a\x00b",
        b"HTTP/1.1 200 a\rb",
        b"HTTP/1.1 200 a\x7fb",
    ]
)


@st.composite
def header_lines(draw: st.DrawFn, length: int) -> list[bytes]:
    good = str(length).encode()
    choices = [
        b"Content-Length: " + good,
        b"content-length:" + good,
        b"Content-Length: " + good + b"  ",
        b"Content-Length: " + str(length + 1).encode(),
        b"Content-Length: " + str(max(length - 1, 0)).encode(),
        b"Content-Length: " + good + b", " + good,
        b"Content-Length: " + good + b"," + str(length + 1).encode(),
        b"Content-Length: +" + good,
        b"Content-Length: -1",
        b"Content-Length: 0x10",
        b"Content-Length: " + b"9" * 25,
        b"Content-Length: ",
        b"Content-Length : " + good,
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",
        b"Connection: close",
        b"Connection: keep-alive",
        b"X-A: b",
        b"X-A:\tb\t",
        b"Set-Cookie: a=b; Path=/",
        b" folded",
        b"\tfolded",
        b"X-B: a\x00b",
        b"X-B: a\rb",
        b"X-B: caf\xe9",
        b"X B: c",
        b": empty",
        b"X-C:",
        b"Date: Wed, 02 Dec 2026 05:00:00 GMT",
    ]
    picked = draw(st.lists(st.sampled_from(choices), max_size=5))
    if draw(st.integers(0, 3)):
        picked.insert(draw(st.integers(0, len(picked))), b"Content-Length: " + good)
    return picked


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))  # anything at all
    body = draw(st.binary(max_size=200))
    lines = [draw(STATUS_LINES), *draw(header_lines(len(body)))]
    ends = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n"])
    head = b"".join(line + draw(ends) for line in lines) + draw(ends)
    prefix = draw(st.sampled_from([b""] * 8 + [b"\r\n", b"\n", b" "]))
    extra = draw(st.sampled_from([b""] * 4 + [b"HTTP/1.1 200 OK\r\n\r\n", b"x"]))
    informational = draw(st.sampled_from([b""] * 6 + [b"HTTP/1.1 100 Continue\r\n\r\n"]))
    return prefix + informational + head + body + extra


# Common answers (the fast path's own) with every spelling h11's grammar allows: blanks
# around and inside values, empty values, obs-text and controls, colons in values, any case.
COMMON_STATUS_LINES = st.sampled_from(
    [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not  Found ", b"HTTP/1.1 200 O\tK", b"HTTP/1.1 201"]
    + [b"HTTP/1.1 500 ", b"HTTP/1.1 200 \t", b"HTTP/1.1 999 caf\xe9", b"HTTP/1.1 302 a\x01b"]
)
COMMON_LINES = st.sampled_from(
    [b"X-A: b", b"X-A:\tb\t", b"x-a:b", b"X-A:  b  c  ", b"X-Empty:", b"X-Empty: \t "]
    + [b"X-Obs: caf\xe9", b"X-Ctl: a\x01b\x7f", b"X-Colon: a:b: c", b"SET-COOKIE: a=b; Path=/"]
)
COMMON_LENGTHS = st.sampled_from(
    [b"Content-Length: %d", b"content-length:%d\t", b"CONTENT-LENGTH:  %d"]
)


@st.composite
def common_responses(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=50))
    lines = [draw(COMMON_STATUS_LINES), *draw(st.lists(COMMON_LINES, max_size=4))]
    lines.insert(draw(st.integers(1, len(lines))), draw(COMMON_LENGTHS) % len(body))
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


@st.composite
def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces, start = [], 0
    for point in [*points, len(data)]:
        if point > start:
            pieces.append(data[start:point])
            start = point
    return pieces


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=requests(),
    response=st.one_of(responses(), common_responses()),
    data=st.data(),
    eof=st.booleans(),
    raw_pipe=st.booleans(),
    max_head=st.sampled_from([24, 64, 120, MAX_HEAD]),
)
def test_the_fast_path_and_h11_agree_on_every_exchange(
    events: list[h11.Event],
    response: bytes,
    data: st.DataObject,
    eof: bool,
    raw_pipe: bool,
    max_head: int,
) -> None:
    reads = data.draw(cuts(response))
    fast = run(PoolSocket, events, reads, eof, raw_pipe, max_head)
    oracle = run(H11Only, events, reads, eof, raw_pipe, max_head)
    assert fast == oracle


def test_the_events_made_without_h11s_constructors_are_h11s() -> None:
    assert data_event(b"piece") == h11.Data(data=b"piece")
    assert END_OF_MESSAGE == h11.EndOfMessage() and not END_OF_MESSAGE.headers


def common(body: bytes, *headers: bytes) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *headers]
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


GET = [h11.Request(method=b"GET", target=b"/", headers=[(b"Host", b"t")]), h11.EndOfMessage()]


def test_a_common_answer_takes_the_fast_path_and_its_body_passes_uncopied() -> None:
    body = b"x" * 5000
    sock = PoolSocket(Owner("client-id"), MAX_HEAD)
    sock.connection_made(Transport())  # type: ignore[arg-type]
    sock.busy = True
    sock.send(*GET)
    sock.data_received(common(body, b"X-A: b")[: -len(body) - 2])  # its blank line to come
    assert sock.poll_event() is h11.NEED_DATA
    sock.data_received(b"\r\n")
    response = sock.poll_event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    assert sock._wire is not None  # not handed to h11
    piece = body[10:]
    sock.data_received(body[:10])
    sock.data_received(piece)
    first = sock.poll_event()
    second = sock.poll_event()
    assert isinstance(first, h11.Data) and bytes(first.data) == body[:10]
    assert isinstance(second, h11.Data) and second.data is piece  # the read itself
    assert isinstance(sock.poll_event(), h11.EndOfMessage)
    assert sock.finish_exchange(False)


@pytest.mark.parametrize(
    "answer",
    [
        common(b"abc", b"Transfer-Encoding: chunked"),
        common(b"abc", b"Content-Length: 4"),
        common(b"abc", b"Connection: close"),
        common(b"abc", b" folded"),
        common(b"abc", b"X-B: a\x00b"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + common(b"abc"),
        b"HTTP/1.1 200 OK\r\n\r\nabc",
        b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
    ],
)
def test_anything_but_the_common_answer_is_left_to_h11(answer: bytes) -> None:
    assert parse_head(answer, MAX_HEAD) is FALLBACK


def test_a_head_past_the_limit_is_left_to_h11_and_one_not_yet_whole_waits() -> None:
    answer = common(b"abc", b"X-A: " + b"a" * 100)
    assert parse_head(answer, 60) is FALLBACK
    assert parse_head(answer[:50], 60) is None
    assert parse_head(answer[:61], 60) is FALLBACK
    assert isinstance(parse_head(answer, MAX_HEAD), Head)
