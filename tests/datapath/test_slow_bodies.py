"""Item 18: a request body must keep a minimum pace, and one address cannot hold an
unbounded number of the relay's connections (each may also hold a spooled body)."""

from __future__ import annotations

import select
import socket
import time

from harness.waiting import wait_until

from relay.protocol import SITE_MAX_BODY_BYTES

GRACE_S = 1.0  # RELAY_BODY_TIMEOUT_S, the setting the first test is about


def test_a_body_trickling_in_gets_408_after_the_grace_period(relay_factory):
    relay = relay_factory(RELAY_BODY_TIMEOUT_S=GRACE_S)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/tunnels HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
        )
        received, elapsed = _trickle_until_answered(sock, 10)

    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"too slowly" in received
    assert elapsed < GRACE_S + 2, elapsed


def test_a_fast_large_body_is_not_cut_by_the_body_deadline(relay_factory):
    relay = relay_factory(RELAY_BODY_TIMEOUT_S=GRACE_S)
    # The site reads every body up to its limit: this one, 2,000 times what the grace
    # period's pace allows, is a body of the largest size it takes.
    body = b"y" * SITE_MAX_BODY_BYTES

    answer = relay.request("POST", "/api/tunnels", body=body)

    assert (answer.status, answer.complete) == (404, True)  # the whole body read, then routed


def test_one_address_cannot_hold_more_than_its_share_of_connections(relay):
    # Defaults: RELAY_MAX_CONNECTIONS_PER_IP. 127.0.0.7 is this test's own address.
    limit = int(relay.env.get("RELAY_MAX_CONNECTIONS_PER_IP", "256"))
    held: list[socket.socket] = []
    try:
        for _ in range(limit):
            held.append(socket.create_connection(("127.0.0.1", relay.port), 10, ("127.0.0.7", 0)))
        # The relay has accepted them all (a request on the last one is answered).
        last = held[-1]
        last.sendall(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert last.recv(100).startswith(b"HTTP/1.1 ")

        answer = relay.get("/api/status", source="127.0.0.7")
        assert answer.status == 429, answer
        assert "connections" in answer.json()["message"]
        assert relay.get("/api/status", source="127.0.0.8").status == 200  # others are served

        held.pop().close()
        wait_until(
            lambda: relay.get("/api/status", source="127.0.0.7").status == 200,
            5,
            "the address to get a connection back",
        )
    finally:
        for sock in held:
            sock.close()


def test_closed_connections_give_their_place_back(relay_factory):
    relay = relay_factory(RELAY_MAX_CONNECTIONS_PER_IP=3)  # the setting under test
    for _ in range(20):  # far more than 3, one after another
        assert relay.get("/api/status", source="127.0.0.9").status == 200


def test_websockets_give_their_place_back_when_they_end(relay_factory):
    # A WebSocket leaves Twisted's HTTP channel for Daphne's WebSocket protocol; its place
    # must still be given back when it closes, or an address is locked out after a while.
    relay = relay_factory(RELAY_MAX_CONNECTIONS_PER_IP=2)  # the setting under test
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: {relay.host('nobody-here')}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", relay.port), 10, ("127.0.0.10", 0)) as sock:
            sock.sendall(handshake)
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")
    wait_until(
        lambda: relay.get("/api/status", source="127.0.0.10").status == 200,
        5,
        "the address to be served again",
    )


def _trickle_until_answered(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Send one byte whenever the relay has said nothing for 0.25 s (the attacker's pace);
    what the relay answered, and after how long."""
    started = time.monotonic()
    received = b""
    while time.monotonic() - started < limit_s:
        if not select.select([sock], [], [], 0.25)[0]:
            sock.sendall(b"x")
            continue
        data = sock.recv(65536)
        if not data:
            break
        received += data
    return received, time.monotonic() - started


AHEAD_S = 3.0  # RELAY_BODY_MAX_AHEAD_S, the setting under test (default 40 s)


def test_a_fast_start_buys_no_more_than_the_maximum_ahead_of_now(relay_factory):
    # Review F5: 1 MiB sent fast earned ~35 min at 500 B/s, then one byte now and then
    # held the connection and its spooled body that long. The credit is capped.
    # The grace period too: the cap may not be below it.
    relay = relay_factory(RELAY_BODY_MAX_AHEAD_S=AHEAD_S, RELAY_BODY_TIMEOUT_S=GRACE_S)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(  # to the relay's own site (the bare domain): every body is read
            b"POST /api/tunnels HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: %d\r\n\r\n" % SITE_MAX_BODY_BYTES
        )
        sock.sendall(b"y" * (SITE_MAX_BODY_BYTES // 2))  # ~17 min at 500 B/s, were it uncapped
        received, elapsed = _trickle_until_answered(sock, 15)

    assert received.startswith(b"HTTP/1.1 408 "), received
    assert elapsed < AHEAD_S + 2, elapsed


def test_a_body_for_a_tunnel_that_does_not_exist_is_refused_before_it_is_read(relay):
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {relay.host('nobody-here')}\r\n"
            "Content-Length: 104857600\r\n\r\n".encode()
        )
        ready = select.select([sock], [], [], 5)[0]  # not one byte of the body sent
        received = sock.recv(65536) if ready else b""

    assert received.startswith(b"HTTP/1.1 404 "), received
    assert b"There is no tunnel called 'nobody-here'" in received
