"""Hostile or broken tunnel clients: one bad response never poisons the next visitor.

A response that is malformed, frames itself two ways, or stops halfway gets the visitor a
502 (or, once the head is out, a cut connection), and its pool socket is closed, never
reused. A client flooding its pool port does not slow other tunnels down.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest
from harness.http import Visitor
from harness.raw_tunnel import RawTunnel
from harness.waiting import IO_TIMEOUT_S

BAD_RESPONSES = [
    ("not-http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    (
        "content-length-and-chunked",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked-and-content-length",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ),
    (
        "two-different-content-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    ("content-length-plus-sign", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
    ("content-length-negative", b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"),
    (
        "gzip-transfer-coding",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ),
    ("status-not-a-number", b"HTTP/1.1 2xx OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-out-of-range", b"HTTP/1.1 1000 Huge\r\nContent-Length: 0\r\n\r\n"),
    ("nul-in-a-header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    (
        "switching-protocols-to-a-plain-get",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    ),
    # Never finished: h11 gives up once an incomplete head passes RELAY_MAX_HEADER_BYTES.
    ("an-endless-head", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 40000),
    ("endless-1xx-answers", b"HTTP/1.1 100 Continue\r\n\r\n" * 20),
]


@pytest.mark.parametrize(
    "response", [r for _, r in BAD_RESPONSES], ids=[i for i, _ in BAD_RESPONSES]
)
def test_a_bad_response_is_a_502_and_its_socket_is_never_reused(raw_tunnel: RawTunnel, response):
    bad_socket = raw_tunnel.pool()

    outcome = raw_tunnel.send(
        f"GET /bad HTTP/1.1\r\nHost: {raw_tunnel.host}\r\n\r\n".encode(), reply=response
    )

    assert outcome.forwarded is not None
    assert outcome.answer.status == 502, outcome.answer
    assert bad_socket.is_closed(timeout=5)
    raw_tunnel.assert_nothing_was_forwarded(fresh=True)  # on a fresh socket, with a clean answer
    assert raw_tunnel.pool() is not bad_socket


@pytest.mark.parametrize(
    "tail",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged", b"\r\n", b"x"],
    ids=["a-second-response", "a-stray-crlf", "one-byte"],
)
def test_bytes_after_the_end_of_a_response_close_the_socket_before_anyone_reuses_it(
    raw_tunnel: RawTunnel, tail
):
    sloppy = raw_tunnel.pool()

    outcome = raw_tunnel.send(
        f"GET /sloppy HTTP/1.1\r\nHost: {raw_tunnel.host}\r\n\r\n".encode(),
        reply=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + tail,
    )

    assert (outcome.answer.status, outcome.answer.body) == (200, b"first")
    assert sloppy.is_closed(timeout=5)
    raw_tunnel.assert_nothing_was_forwarded(fresh=True)


def test_a_response_that_stops_halfway_cuts_the_visitor_after_the_response_timeout(
    raw_tunnel: RawTunnel,
):
    stuck = raw_tunnel.pool()
    started = time.monotonic()

    outcome = raw_tunnel.send(
        f"GET /stuck HTTP/1.1\r\nHost: {raw_tunnel.host}\r\n\r\n".encode(),
        reply=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
    )

    assert outcome.answer.status == 200
    assert not outcome.answer.complete
    assert outcome.answer.body == b"only part"
    assert 2 - 0.2 <= time.monotonic() - started < 2 + 3  # RELAY_RESPONSE_TIMEOUT_S=2
    assert stuck.is_closed(timeout=5)
    raw_tunnel.assert_nothing_was_forwarded(fresh=True)


# A byte of the head every TRICKLE_S: well within each wait's RELAY_RESPONSE_TIMEOUT_S (2 s
# on this relay), so only a deadline for the whole head can end it.
TRICKLE_S = 0.4


def test_a_response_head_trickled_a_byte_at_a_time_is_a_504_after_the_response_timeout(
    raw_tunnel: RawTunnel,
):
    trickler = raw_tunnel.pool()
    head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000  # never ends, far under its size limit
    with Visitor(raw_tunnel.relay.port, timeout=IO_TIMEOUT_S) as visitor:
        visitor.send(f"GET /trickle HTTP/1.1\r\nHost: {raw_tunnel.host}\r\n\r\n".encode())
        trickler.read_request()
        started = time.monotonic()
        sent = 0
        while not select.select([visitor.sock], [], [], TRICKLE_S)[0]:
            assert time.monotonic() - started < 2 + 5, "the trickled head held the visitor"
            try:
                trickler.send(head[sent : sent + 1])
            except OSError:
                break  # the relay gave up on the socket: its answer is on its way
            sent += 1
        answer = visitor.response()
    elapsed = time.monotonic() - started

    assert answer.status == 504, answer
    assert 2 - 0.2 <= elapsed < 2 + 3  # RELAY_RESPONSE_TIMEOUT_S=2, for the whole head
    assert sent >= 3  # bytes kept coming within each wait
    assert trickler.is_closed(timeout=5)
    raw_tunnel.assert_nothing_was_forwarded(fresh=True)


def flood(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """Open connections to `port` as fast as possible, each saying garbage, until `stop`."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"\x16\x03\x01 garbage " * 64)
                counts["opened"] += 1
        except OSError:
            counts["refused"] += 1


def test_a_client_flooding_its_pool_port_does_not_slow_down_another_tunnel(
    hardening_relay, fake_client_factory, wait_until
):
    flooder = fake_client_factory(hardening_relay)
    victim = fake_client_factory(hardening_relay)
    (victim_socket,) = victim.connect(1)
    stop = threading.Event()
    counts = {"opened": 0, "refused": 0}
    threads = [
        threading.Thread(target=flood, args=(flooder.port, stop, counts), daemon=True)
        for _ in range(4)
    ]
    latencies = []
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: counts["opened"] >= 50, 10, "the flood to get going")
        before = counts["opened"] + counts["refused"]
        # At least 50 requests, and for longer than the flood's 1 s connect timeout: when
        # the pool port's accept queue is full, flood connections wait that long.
        busy_until = time.monotonic() + 2.5
        with hardening_relay.visitor(victim.name) as visitor:
            i = 0
            while i < 50 or time.monotonic() < busy_until:
                i += 1
                started = time.monotonic()
                visitor.send(f"GET /{i} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
                request = victim_socket.read_request()
                victim_socket.respond(200, request.target.encode())
                assert visitor.response().body == f"/{i}".encode()
                latencies.append(time.monotonic() - started)
        after = counts["opened"] + counts["refused"]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)

    # The flood really ran alongside the victim's requests (connections opened, or held
    # waiting by a full accept queue), not just before them.
    assert after > before, counts
    assert max(latencies) < 1.0, max(latencies)
    assert hardening_relay.sockets(victim.name) == 1
    assert (hardening_relay.sockets(flooder.name) or 0) <= flooder.max_conn_count
