"""Bytes through a TCP tunnel on the default path (our lt, its pool upgraded over the relay's
URL): 100 MiB each way checked with sha256, half-close, 200 visitors at once on the default
pool of 10 connections.

Each transfer streams (bench/tcp_transfer.py hashes as it reads and sends the pattern from a
1 MiB block): the test never holds the whole of it."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.relay import Relay
from harness.tcp_tunnels import LtTcp, LtTcpLauncher, session_counts
from harness.waiting import wait_until

from bench import payload, tcp_transfer
from bench.tcp_transfer import (
    IO_TIMEOUT_S,
    connect,
    download,
    read_line,
    read_to_eof,
    stats,
    upload,
)

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
BIG = 100 * MIB
VISITORS = 200  # at once, over the default pool of RELAY_MAX_SOCKETS=10 connections
VISITOR_BYTES = 64 * 1024
POOL = 10  # RELAY_MAX_SOCKETS' default: the most pool connections lt may open


@pytest.fixture(scope="module")
def tunnel(
    lt_tcp: LtTcpLauncher, relay_url: str, tcp_app: int, token_of: Callable[[], str]
) -> Iterator[LtTcp]:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of())
    try:
        yield lt
    finally:
        lt.process.stop()


def test_the_url_is_a_port_of_the_relays_tcp_range(tunnel: LtTcp, tcp_relay: Relay) -> None:
    low, high = map(int, tcp_relay.env["RELAY_TCP_PORTS"].split("-"))
    assert tunnel.url == f"tcp://localhost:{tunnel.port}"  # RELAY_TCP_HOST: RELAY_DOMAIN
    assert low <= tunnel.port <= high


def test_100_mib_from_the_visitor_reach_the_app_whole(tunnel: LtTcp) -> None:
    result = upload(tunnel.port, BIG)
    assert result.sha256_ok, "the app's count and sha256 differ from what the visitor sent"


def test_100_mib_from_the_app_reach_the_visitor_whole(tunnel: LtTcp) -> None:
    result = download(tunnel.port, BIG)
    assert (result.bytes, result.sha256_ok) == (BIG, True)


def test_both_ways_at_once_the_echo_comes_back_whole(tunnel: LtTcp) -> None:
    result = tcp_transfer.echo(tunnel.port, 16 * MIB)
    assert result.sha256_ok


def test_a_visitor_that_shuts_down_writing_still_reads_the_apps_reply(tunnel: LtTcp) -> None:
    # SINK answers only after it read the visitor's FIN: the FIN crossed the tunnel as a FIN,
    # and the direction back stayed open after it.
    data = b"half-close " * 1000
    with connect(tunnel.port) as sock:
        sock.sendall(b"SINK\n" + data)
        sock.shutdown(socket.SHUT_WR)
        answer = read_line(sock)
        assert sock.recv(200) == b""  # then the app's FIN reaches the visitor
    assert answer == f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def test_the_apps_fin_reaches_the_visitor_who_goes_on_sending(tunnel: LtTcp) -> None:
    # SEND writes its bytes, then a FIN, and reads on until the visitor's FIN: the visitor
    # sees the end of the data while its own direction is still open.
    with connect(tunnel.port) as sock:
        sock.sendall(b"SEND 1000\n")
        count, _ = read_to_eof(sock)
        assert count == 1000
        sock.sendall(b"still here")  # the app's side reads on: no reset
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(IO_TIMEOUT_S)
        assert sock.recv(10) == b""


def test_200_visitors_at_once_over_the_default_pool_are_all_served(
    tunnel: LtTcp, tcp_app: int
) -> None:
    _, before = stats(tcp_app)
    with ThreadPoolExecutor(VISITORS) as pool:
        results = list(pool.map(lambda _: upload(tunnel.port, VISITOR_BYTES), range(VISITORS)))
    assert [r.sha256_ok for r in results] == [True] * VISITORS
    _, after = stats(tcp_app)
    assert after - before == VISITORS + 1  # each visitor once, and the STATS itself


def test_the_session_row_counts_the_tunnels_connections_and_bytes(
    tunnel: LtTcp, tcp_relay: Relay
) -> None:
    # Counters reach the database every RELAY_FLUSH_S (5 s): the admin, the account page
    # and the daily quota read them there.
    start = session_counts(tcp_relay, tunnel.port)
    assert start is not None, "no live session row with the tunnel's tcp_port"
    assert upload(tunnel.port, MIB).sha256_ok
    assert download(tunnel.port, 2 * MIB).sha256_ok

    def counted() -> bool:
        now = session_counts(tcp_relay, tunnel.port)
        assert now is not None
        return now[0] - start[0] >= 2 and now[1] - start[1] >= MIB and now[2] - start[2] >= 2 * MIB

    wait_until(counted, 3 * 5.0, "the session row to count the two connections' bytes")


def test_the_pattern_helper_hashes_what_it_sends() -> None:
    # The transfers above compare with payload.sha256_of: a wrong helper would pass them all.
    assert (
        payload.sha256_of(3 * MIB + 5)
        == hashlib.sha256(b"".join(payload.chunks(3 * MIB + 5))).hexdigest()
    )


def test_one_address_holds_the_whole_pool_at_once(tunnel: LtTcp) -> None:
    # A database client's pool: long-lived connections from one address, all open at once.
    # lt keeps 2 spare pool connections and opens more as visitors take them, up to the
    # tunnel's pool; a TCP visitor address may hold all of it (CIDR rules decide who
    # connects), unlike an HTTP visitor's, which leaves RELAY_SPARE_SOCKETS to others.
    held = [connect(tunnel.port) for _ in range(POOL)]
    try:
        for i, sock in enumerate(held):
            sock.sendall(f"ECHO\nconnection {i}".encode())
            assert sock.recv(100) == f"connection {i}".encode()  # carried while all stay open
        with connect(tunnel.port) as extra:  # one more waits for one of them to end
            extra.sendall(b"ECHO\nthe next one")
            extra.settimeout(0.5)
            with pytest.raises(TimeoutError):
                extra.recv(100)
            held.pop().close()
            extra.settimeout(IO_TIMEOUT_S)
            assert extra.recv(100) == b"the next one"
    finally:
        for sock in held:
            sock.close()
