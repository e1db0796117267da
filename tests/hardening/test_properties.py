"""Property-based: random and mutated HTTP, from both sides, never hangs or breaks the relay.

Visitors: valid requests mutated (a byte flipped, a header line duplicated, CR/LF/NUL
inserted, cut short) and random bytes. Each gets a well-formed HTTP response or a clean
close within a deadline, the same status whether sent at once or one byte at a time, and
the relay logs no ERROR or Traceback.

Tunnel clients: valid responses mutated the same way. The visitor gets a response, a 502
or 504, or a cut stream; the next request on a fresh pool socket works.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from dataclasses import dataclass

import h11
import pytest
from harness.fake_client import FakeTunnelClient
from harness.raw_tunnel import RawTunnel, ok_reply
from harness.relay import Relay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DEADLINE_S = 8.0  # each exchange ends well within this: the relay's timeouts are 0.5 s
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def property_relay(module_relay_factory) -> Relay:
    return module_relay_factory(
        RELAY_HEADER_TIMEOUT_S=0.5, RELAY_IDLE_TIMEOUT_S=0.5, RELAY_RESPONSE_TIMEOUT_S=0.5
    )


@pytest.fixture(scope="module")
def tunnel(property_relay: Relay):
    client = FakeTunnelClient(property_relay)
    try:
        yield RawTunnel(property_relay, client)
    finally:
        client.close()
        log = property_relay.process.output()
        assert not re.search(r" ERROR |Traceback", log), log[-5000:]


# --- what a visitor received ------------------------------------------------------------------
@dataclass
class Received:
    kind: str  # "response" (complete), "cut" (head, then the stream ended), "closed" (nothing)
    status: int = 0
    body: bytes = b""


def parser_for(raw: bytes) -> h11.Connection:
    """A client-side parser expecting the response to `raw` (HEAD responses have no body)."""
    conn = h11.Connection(h11.CLIENT)
    method = b"HEAD" if raw.startswith(b"HEAD ") else b"GET"
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    return conn


def parse(data: bytes, raw: bytes) -> Received:
    """The first response in `data` (the connection closed after it), as far as it goes."""
    if not data:
        return Received("closed")
    conn = parser_for(raw)
    conn.receive_data(data)
    conn.receive_data(b"")
    status, body = 0, []
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return Received("cut", status, b"".join(body))
        if isinstance(event, h11.InformationalResponse):
            if event.status_code == 101:
                return Received("cut", status)
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return Received("response", status, b"".join(body))
        else:  # NEED_DATA or ConnectionClosed before the end
            return Received("cut", status, b"".join(body))


def classify(data: bytes, raw: bytes) -> Received:
    """What a visitor got; bytes that do not even start an HTTP response fail the test."""
    received = parse(data, raw)
    assert received.kind == "closed" or received.status, f"not HTTP: {data[:300]!r}"
    return received


def visit(tunnel: RawTunnel, raw: bytes, one_byte_at_a_time: bool, reply: bytes) -> Received:
    """Send `raw`, answer whatever reaches the pool with `reply`, read until close."""
    pool_socket = tunnel.pool()
    visitor = socket.create_connection(("127.0.0.1", tunnel.relay.port), timeout=DEADLINE_S)
    visitor.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send() -> None:
        try:
            if one_byte_at_a_time:
                for i in range(len(raw)):
                    visitor.sendall(raw[i : i + 1])
            else:
                visitor.sendall(raw)
        except OSError:
            pass  # the relay answered and closed before the rest went out

    sender = threading.Thread(target=send, daemon=True)
    received = b""
    forwarded = None
    try:
        sender.start()
        deadline = time.monotonic() + DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no answer and no close within {DEADLINE_S} s for {raw[:200]!r}"
            watched = [visitor] + ([pool_socket.sock] if not pool_socket.eof else [])
            ready, _, _ = select.select(watched, [], [], left)
            if pool_socket.sock in ready:
                try:
                    forwarded = pool_socket.read_request(timeout=left)
                    pool_socket.send(reply)
                except (ConnectionError, TimeoutError, ValueError, OSError):
                    pool_socket.eof = True
            if visitor in ready:
                try:
                    data = visitor.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    break
                received += data
                if classify_if_complete(received, raw):
                    break
    finally:
        sender.join(timeout=DEADLINE_S)
        visitor.close()
    if forwarded is not None and forwarded.body and not pool_socket.eof:
        # The relay never reuses a pool socket after a body: let the next visit see it gone.
        pool_socket.is_closed(timeout=DEADLINE_S)
    return classify(received, raw)


def classify_if_complete(data: bytes, raw: bytes) -> bool:
    """True once `data` holds one whole response (no need to wait for the close)."""
    conn = parser_for(raw)
    conn.receive_data(data)
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return True
            if event is h11.NEED_DATA:
                return False
    except h11.ProtocolError:
        return False


# --- mutations --------------------------------------------------------------------------------
@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "duplicate", "insert", "cut"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "duplicate":
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                i = draw(st.integers(1, len(lines) - 2))
                lines.insert(i, lines[i])
                data = bytearray(b"\r\n".join(lines))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"\r", b"\n", b"\x00", b"\r\n", b" ", b"\t"]))
        else:
            data = data[:at]
    return bytes(data)


def requests_for(host: str) -> st.SearchStrategy[bytes]:
    h = host.encode()
    valid = [
        b"GET /p?q=1 HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\nX-A: 1\r\n\r\n" % h,
        b"POST /u HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nX-B: 2\r\n\r\nhello" % h,
        b"PUT /c HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        % h,
        b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % h,
        # Trailer lines are checked as head lines are (relay/edge/trailers.py).
        b"PUT /t HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n" % h,
    ]
    return st.one_of(
        st.sampled_from(valid).flatmap(mutated),
        st.binary(min_size=1, max_size=200),
    )


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-R: 1\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nX-R: 1\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
]


# --- the properties ---------------------------------------------------------------------------
@EXAMPLES
@given(data=st.data())
def test_any_request_gets_an_http_answer_or_a_clean_close_the_same_way_at_any_pace(
    tunnel: RawTunnel, data: st.DataObject
):
    raw = data.draw(requests_for(tunnel.host))

    at_once = visit(tunnel, raw, one_byte_at_a_time=False, reply=ok_reply())
    byte_by_byte = visit(tunnel, raw, one_byte_at_a_time=True, reply=ok_reply())

    assert at_once.status == byte_by_byte.status, (raw, at_once, byte_by_byte)


@EXAMPLES
@given(response=st.sampled_from(RESPONSES).flatmap(mutated))
def test_any_response_from_a_tunnel_client_reaches_the_visitor_intact_or_as_an_error(
    tunnel: RawTunnel, response: bytes
):
    request = f"GET /r HTTP/1.1\r\nHost: {tunnel.host}\r\n\r\n".encode()
    # What a strict client would make of the tunnel's bytes, closed after them.
    meant = parse(response, request)

    received = visit(tunnel, request, one_byte_at_a_time=False, reply=response)

    if received.kind == "response" and received.status not in (502, 504):
        # Delivered as complete: it must be exactly what the tunnel client sent.
        assert meant.kind == "response", (response, received)
        assert (received.status, received.body) == (meant.status, meant.body)
    else:
        # A 502/504, or a stream cut before it could look complete.
        assert received.kind in ("response", "cut", "closed"), received
    tunnel.assert_nothing_was_forwarded(fresh=True)
