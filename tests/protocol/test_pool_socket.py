"""Byte-level behaviour of pool sockets, with a fake tunnel client that controls every byte.

The fake client registers over HTTP like `lt` and opens the pool sockets itself; each test
writes exactly the bytes a buggy or hostile client would.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from relay.protocol import POOL_KEEPALIVE_IDLE_S

JSON = [("Accept", "application/json")]
MAX_SOCKETS = 4
RESPONSE_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def pool_relay(module_relay_factory):
    return module_relay_factory(
        RELAY_MAX_SOCKETS=MAX_SOCKETS,
        RELAY_SOCKET_WAIT_S=5,
        RELAY_RESPONSE_TIMEOUT_S=RESPONSE_TIMEOUT_S,
    )


@pytest.fixture
def client(pool_relay, fake_client_factory):
    return fake_client_factory(pool_relay)


def ask(relay, client, target: str, method: str = "GET", headers=None, source=None):
    """A visitor on its own connection who has sent its request (answer not read yet)."""
    visitor = relay.visitor(client.name, source)
    extra = "".join(f"{n}: {v}\r\n" for n, v in headers or [])
    visitor.send(f"{method} {target} HTTP/1.1\r\nHost: {visitor.host}\r\n{extra}\r\n".encode())
    return visitor


def test_garbage_instead_of_a_response_is_a_502_and_the_socket_is_discarded(pool_relay, client):
    client.connect(2)
    with ask(pool_relay, client, "/one", headers=JSON) as visitor:
        bad, request = client.next_request()
        assert request.target == "/one"
        bad.send(b"THIS IS NOT HTTP AT ALL\r\n\r\n")

        answer = visitor.response()

    assert answer.status == 502
    assert answer.json()["message"]
    assert bad.is_closed()
    pool_relay.wait_for_sockets(client.name, 1)

    with ask(pool_relay, client, "/two") as visitor:
        good, request = client.next_request()
        assert good is not bad and request.target == "/two"
        good.respond(200, b"two")
        answer = visitor.response()
    assert (answer.status, answer.body) == (200, b"two")


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_a_client_that_closes_mid_response_cuts_the_visitors_connection(
    pool_relay, client, partial
):
    client.connect(1)
    with ask(pool_relay, client, "/cut") as visitor:
        pool_socket, _ = client.next_request()
        pool_socket.send(partial)
        pool_socket.close()

        answer = visitor.response()

        # Whatever got out (maybe nothing, maybe the head and part of the body), the
        # visitor must not mistake it for a whole response, nor be left waiting.
        assert not answer.complete
        assert answer.status in (0, 200)
        assert len(answer.body) < 1000
        assert visitor.is_closed(timeout=1)


def test_a_client_that_never_answers_gets_a_504_and_loses_the_socket(pool_relay, client):
    client.connect(1)
    with ask(pool_relay, client, "/never", headers=JSON) as visitor:
        silent, _ = client.next_request()
        started = time.monotonic()
        answer = visitor.response()
    assert answer.status == 504
    assert RESPONSE_TIMEOUT_S - 0.1 <= time.monotonic() - started < RESPONSE_TIMEOUT_S + 3
    assert silent.is_closed()


def test_visitors_that_give_up_waiting_do_not_wedge_the_tunnel(pool_relay, client, wait_until):
    sockets = client.connect(MAX_SOCKETS)
    base = pool_relay.status()["in_flight"]
    # Each from its own address: one address may hold only all but RELAY_SPARE_SOCKETS.
    holders = [
        ask(pool_relay, client, f"/held-{i}", source=f"127.0.3.{i + 1}") for i in range(MAX_SOCKETS)
    ]
    quitters = []
    try:
        held = {}
        for _ in range(MAX_SOCKETS):
            pool_socket, request = client.next_request()
            held[request.target] = pool_socket
        assert set(held.values()) == set(sockets)

        quitters = [ask(pool_relay, client, f"/quitter-{i}") for i in range(6)]
        in_flight = lambda: pool_relay.status()["in_flight"]  # noqa: E731
        wait_until(lambda: in_flight() == base + MAX_SOCKETS + 6, message="6 visitors to queue")
        for quitter in quitters:
            quitter.close()
        wait_until(lambda: in_flight() == base + MAX_SOCKETS, message="the quitters to go")

        for i, holder in enumerate(holders):
            held[f"/held-{i}"].respond(200, f"held-{i}".encode())
            assert holder.response().body == f"held-{i}".encode()

        # Every socket is free again: new visitors are served, none gets a quitter's turn.
        for i in range(MAX_SOCKETS + 1):
            with ask(pool_relay, client, f"/after-{i}") as visitor:
                pool_socket, request = client.next_request(timeout=5)
                assert request.target == f"/after-{i}"
                pool_socket.respond(200, b"after")
                assert visitor.response().body == b"after"
        assert pool_relay.sockets(client.name) == MAX_SOCKETS
    finally:
        for visitor in holders + quitters:
            visitor.close()


def test_a_pool_socket_from_a_foreign_ip_is_rejected(pool_relay, client):
    assert client.source != "127.0.0.2"  # fake clients register from 127.1.x.y
    foreign = client.open(source="127.0.0.2")

    assert foreign.is_closed(timeout=5)
    assert pool_relay.sockets(client.name) == 0

    client.connect(1)  # the owner's own address is still welcome
    assert pool_relay.sockets(client.name) == 1


def test_pool_sockets_beyond_max_conn_count_are_refused(pool_relay, client):
    assert client.max_conn_count == MAX_SOCKETS
    kept = client.connect(MAX_SOCKETS)

    extra = client.open()

    assert extra.is_closed(timeout=5)
    assert pool_relay.sockets(client.name) == MAX_SOCKETS
    assert not any(pool_socket.is_closed(timeout=0.05) for pool_socket in kept)


def test_bytes_on_an_idle_pool_socket_close_that_socket(pool_relay, client):
    chatty, quiet = client.connect(2)

    # A response sent before any request would be handed to the next visitor.
    chatty.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")

    assert chatty.is_closed(timeout=5)
    pool_relay.wait_for_sockets(client.name, 1)
    with ask(pool_relay, client, "/real") as visitor:
        pool_socket, _ = client.next_request()
        assert pool_socket is quiet
        pool_socket.respond(200, b"real")
        assert visitor.response().body == b"real"


def test_extra_bytes_after_a_complete_response_discard_the_socket(pool_relay, client):
    client.connect(2)
    with ask(pool_relay, client, "/first") as visitor:
        sloppy, _ = client.next_request()
        sloppy.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
        )
        assert visitor.response().body == b"first"
    assert sloppy.is_closed(timeout=5)

    with ask(pool_relay, client, "/second") as visitor:
        pool_socket, request = client.next_request()
        assert pool_socket is not sloppy and request.target == "/second"
        pool_socket.respond(200, b"second")
        answer = visitor.response()
    assert (answer.status, answer.body) == (200, b"second")


def test_hop_by_hop_request_headers_are_dropped_and_forwarding_headers_replaced(pool_relay, client):
    client.connect(1)
    sent = [
        ("Connection", "keep-alive, X-Named-Hop"),
        ("X-Named-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Authorization", "Basic c2VjcmV0"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "1"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-End-To-End", "kept"),
    ]
    with ask(pool_relay, client, "/headers?q=1", headers=sent) as visitor:
        pool_socket, request = client.next_request()
        pool_socket.respond(200, b"ok")
        assert visitor.response().status == 200

    names = request.header_names()
    dropped = {
        "x-named-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "forwarded",
        "x-forwarded-port",
    }
    assert dropped.isdisjoint(names), names
    assert "keep-alive" not in (request.header("connection") or "").lower()
    assert request.target == "/headers?q=1"
    assert request.header("host") == pool_relay.host(client.name)
    assert request.header("x-end-to-end") == "kept"
    assert names.count("x-forwarded-for") == 1
    assert request.header("x-forwarded-for") == "127.0.0.1"
    assert request.header("x-forwarded-proto") == "http"
    assert request.header("x-forwarded-host") == pool_relay.host(client.name)


def test_hop_by_hop_response_headers_do_not_reach_the_visitor(pool_relay, client):
    client.connect(1)
    with ask(pool_relay, client, "/") as visitor:
        pool_socket, _ = client.next_request()
        pool_socket.respond(
            200,
            b"ok",
            headers=[
                "Connection: X-Named-Hop",
                "X-Named-Hop: 1",
                "Keep-Alive: timeout=5",
                "Proxy-Authenticate: Basic",
                "Trailer: X-Checksum",
                "Upgrade: h2c",
                "X-End-To-End: kept",
            ],
        )
        answer = visitor.response()

    assert (answer.status, answer.body) == (200, b"ok")
    names = answer.header_names()
    assert {"x-named-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"}.isdisjoint(
        names
    ), names
    assert "x-named-hop" not in (answer.header("connection") or "").lower()
    assert answer.header("x-end-to-end") == "kept"


def test_a_head_response_has_no_body_and_the_next_request_gets_a_fresh_raw_socket(
    pool_relay, client
):
    (only,) = client.connect(1)
    with pool_relay.visitor(client.name) as visitor:
        visitor.send(f"HEAD /file HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        pool_socket, request = client.next_request()
        assert request.method == "HEAD"
        pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")

        head = visitor.response("HEAD")
        assert (head.status, head.body, head.complete) == (200, b"", True)
        assert head.header("content-length") == "1234"

        # Same visitor connection, a new pool socket: this client is a raw pipe (no client
        # id, like the npm one), which is never reused after HEAD, since an app that writes a
        # body anyway often writes it a little later, as the next visitor's answer.
        assert_the_next_request_gets_a_fresh_socket(pool_relay, client, visitor, only)


def assert_the_next_request_gets_a_fresh_socket(pool_relay, client, visitor, used) -> None:
    assert used.is_closed()
    pool_relay.wait_for_sockets(client.name, 0)
    (fresh,) = client.connect(1)
    visitor.send(f"GET /next HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
    pool_socket, request = client.next_request()
    assert pool_socket is fresh and request.target == "/next"
    pool_socket.respond(200, b"next")
    assert visitor.response().body == b"next"


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_pass_through_and_a_raw_socket_is_not_reused_after_them(
    pool_relay, client, status
):
    (only,) = client.connect(1)
    with pool_relay.visitor(client.name) as visitor:
        visitor.send(f"GET /maybe HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        pool_socket, _ = client.next_request()
        pool_socket.send(f'HTTP/1.1 {status} Nothing\r\nETag: "v1"\r\n\r\n'.encode())

        answer = visitor.response()
        assert (answer.status, answer.body, answer.complete) == (status, b"", True)
        assert answer.header("etag") == '"v1"'

        assert_the_next_request_gets_a_fresh_socket(pool_relay, client, visitor, only)


def test_the_relay_probes_idle_pool_sockets_so_a_vanished_client_frees_its_name(pool_relay, client):
    """A client whose network went away must not hold its name for hours (issue 10 item 5):
    the relay's end of every pool socket runs TCP keepalive on relay.protocol's timing."""
    (pool,) = client.connect(1)
    ours = pool.sock.getsockname()[1]
    # The relay's side of this connection: source port = pool port, peer = our port.
    shown = subprocess.run(
        ["ss", "-tnoH", "state", "established", f"( sport = :{client.port} and dport = :{ours} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    timer = re.search(r"timer:\(keepalive,(\d+)(?:\.\d+)?(m?s)ec", shown)
    assert timer is not None, f"no keepalive timer on the relay's pool socket: {shown!r}"
    left = int(timer.group(1)) / (1000 if timer.group(2) == "ms" else 1)
    assert 0 < left <= POOL_KEEPALIVE_IDLE_S
