"""Our lt's pool connections over the relay's own port, byte by byte: a fake client that
registers like our lt and upgrades `GET /api/tunnels/<id>/pool` with its secret (the wire
contract of relay.protocol, "pool connections over the relay's own port"), and every way a
hostile or broken one can get it wrong."""

from __future__ import annotations

import re
import socket
import subprocess
import threading

import pytest
from harness.fake_client import UpgradingTunnelClient, fresh_loopback
from harness.waiting import IO_TIMEOUT_S, unique_name

from relay.protocol import POOL_KEEPALIVE_IDLE_S

HEAD_TIMEOUT_S = 1  # the head deadline of the relay of the slow-head test


@pytest.fixture
def client(relay):
    made = UpgradingTunnelClient(relay)
    try:
        yield made
    finally:
        made.close()


def visit(relay, name: str, target: str, headers=None) -> tuple[threading.Thread, list]:
    """A visitor's request in a thread (its answer in the list), so the test can serve it."""
    answers: list = []

    def run() -> None:
        answers.append(relay.get(target, name=name, headers=headers))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answers


def served(relay, client, pool, target: str = "/hello", headers=None):
    """A visitor's request that reached `pool`, answered from there: (request, answer)."""
    thread, answers = visit(relay, client.name, target, headers)
    request = pool.read_request()
    pool.respond(200, b"from the pool connection")
    thread.join(IO_TIMEOUT_S)
    assert answers, "the visitor got no answer"
    return request, answers[0]


def test_the_registration_answer_gives_our_lt_a_pool_url_and_secret_and_no_raw_port(relay):
    client = UpgradingTunnelClient(relay)
    assert client.port == 0
    assert client.pool_url == f"http://127.0.0.1:{relay.port}/api/tunnels/{client.name}/pool"
    assert len(client.secret) == 64 and int(client.secret, 16) >= 0
    npm = relay.register(unique_name("npm"), source="127.0.0.7")
    assert npm.status == 200 and npm.json()["port"] > 0
    assert "pool_url" not in npm.json() and "pool_secret" not in npm.json()


OLDER_LT = [("User-Agent", "tunnelsite-lt/0.1"), ("X-Tunnelsite-Client", "older-lt-0001")]


def test_a_client_id_without_the_pool_header_gets_a_raw_pool_port_as_before(relay):
    """Review finding 2: an older lt (or lt --raw-pool) sends its client id but not
    X-Tunnelsite-Pool: upgrade; it gets its address-bound raw pool port and nothing else."""
    answer = relay.get(f"/{unique_name('older')}", headers=OLDER_LT, source="127.0.0.31")
    assert answer.status == 200, answer
    body = answer.json()
    assert body["port"] > 0 and "pool_url" not in body and "pool_secret" not in body
    pool = socket.create_connection(("127.0.0.1", body["port"]), IO_TIMEOUT_S, ("127.0.0.31", 0))
    try:
        relay.wait_for_sockets(body["id"], 1)  # the raw listener takes its own address
    finally:
        pool.close()
    upgraded = UpgradingTunnelClient(relay)
    try:
        assert upgraded.port == 0
        headers = {key: value for key, value in upgraded.registration_headers}
        assert headers["cache-control"] == "no-store"  # it carries the pool secret
    finally:
        upgraded.close()


def test_without_raw_pools_a_client_id_without_the_pool_header_gets_426(relay_factory):
    encrypted_only = relay_factory(RELAY_RAW_POOLS="false")
    answer = encrypted_only.get(f"/{unique_name('older')}", headers=OLDER_LT)
    assert answer.status == 426, answer
    assert "accepts only encrypted tunnel clients" in answer.json()["message"]
    upgraded = UpgradingTunnelClient(encrypted_only)  # with the header: its upgraded pool
    upgraded.close()


def test_our_lt_reclaiming_a_name_from_the_npm_client_closes_its_raw_listener(relay):
    """Review finding 4: nothing may reach a tunnel our lt holds by its address alone."""
    source = fresh_loopback()
    npm = relay.register(unique_name("handed"), source=source)
    name, port = npm.json()["id"], npm.json()["port"]
    raw = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S, (source, 0))
    relay.wait_for_sockets(name, 1)
    raw.close()  # the npm client is gone: its owner may have the name back
    relay.wait_for_sockets(name, 0)
    ours = UpgradingTunnelClient(relay, name, source)
    try:
        assert ours.port == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), IO_TIMEOUT_S, (source, 0)).close()
        (pool,) = ours.connect(1)
        request, answer = served(relay, ours, pool)
        assert answer.status == 200
        # The reverse: the npm client after our lt gets a raw pool port, as before.
        pool.close()
        relay.wait_for_sockets(name, 0)
        again = relay.register(name, source=source)
        assert again.status == 200 and again.json()["port"] > 0
    finally:
        ours.close()


def test_the_right_secret_is_answered_101_and_the_connection_carries_visitors(relay, client):
    answer = client.upgrade()
    assert answer.status == 101
    assert answer.headers["upgrade"] == "tunnelsite-pool"
    relay.wait_for_sockets(client.name, 1)
    request, visitor = served(relay, client, answer.pool_socket, "/through/the/upgrade")
    assert (request.method, request.target) == ("GET", "/through/the/upgrade")
    assert (visitor.status, visitor.body) == (200, b"from the pool connection")
    # Kept for the next visitor, as a raw pool socket is.
    _, again = served(relay, client, answer.pool_socket, "/again")
    assert again.status == 200


def test_an_upgraded_connection_is_bound_by_its_secret_not_its_address(relay, client):
    answer = client.upgrade(source="127.0.0.9")  # not the address that registered
    assert answer.status == 101
    relay.wait_for_sockets(client.name, 1)


@pytest.mark.parametrize("secret", ["", "0" * 64, "not-hex"], ids=["missing", "wrong", "junk"])
def test_a_missing_or_wrong_secret_is_401_and_nothing_attaches(relay, client, secret):
    answer = client.upgrade(client.upgrade_head(secret=secret))
    assert answer.status == 401
    assert answer.headers["connection"] == "close"
    assert "secret" in answer.message()
    assert client.secret not in answer.body.decode()
    assert answer.pool_socket.is_closed()
    assert relay.sockets(client.name) == 0


def test_another_tunnels_secret_is_401(relay, client):
    other = UpgradingTunnelClient(relay)
    try:
        answer = client.upgrade(client.upgrade_head(secret=other.secret))
        assert answer.status == 401
        assert relay.sockets(client.name) == 0
    finally:
        other.close()


def test_the_secret_of_an_older_registration_no_longer_attaches(relay, client):
    old = client.secret
    client.register(client.name, secret=old)  # our lt registering again: a new secret
    assert client.secret != old
    assert client.upgrade(client.upgrade_head(secret=old)).status == 401
    assert client.upgrade().status == 101


def test_an_upgrade_for_no_tunnel_is_404(relay, client):
    answer = client.upgrade(client.upgrade_head(name=unique_name("nobody")))
    assert answer.status == 404
    assert "no tunnel called" in answer.message()
    assert answer.pool_socket.is_closed()


def test_one_more_than_max_conn_count_is_429_and_the_others_stay(relay, client):
    client.connect(client.max_conn_count)
    answer = client.upgrade()
    assert answer.status == 429
    assert str(client.max_conn_count) in answer.message()
    assert relay.sockets(client.name) == client.max_conn_count


def test_bytes_pipelined_after_the_upgrade_head_are_the_pool_connections_not_a_request(
    relay, client
):
    """Bytes sent with the head belong to the pool connection (where bytes nobody asked for
    mean a broken client: it is dropped), never parsed as a second request to the site."""
    pipelined = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\n\r\n".encode()
    received = b""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(client.upgrade_head() + pipelined)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # dropped with a reset: the 101 may be lost with it
    assert received in (
        b"",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Upgrade: tunnelsite-pool\r\n\r\n",
    )
    assert relay.sockets(client.name) == 0


def test_a_slow_upgrade_head_is_answered_408(relay_factory):
    slow = relay_factory(RELAY_HEADER_TIMEOUT_S=HEAD_TIMEOUT_S)
    client = UpgradingTunnelClient(slow)
    try:
        half = client.upgrade_head()[:-4]  # never ends
        answer = client.upgrade(half, timeout=HEAD_TIMEOUT_S + IO_TIMEOUT_S)
        assert answer.status == 408
        assert slow.sockets(client.name) == 0
    finally:
        client.close()


VISITOR_CONNECTIONS_PER_IP = 2  # the setting under test, below the pool's max_conn_count


def test_upgraded_pool_connections_do_not_count_against_the_visitor_limit(relay_factory):
    """Review finding 3: RELAY_MAX_CONNECTIONS_PER_IP is a visitor limit; an address's
    place is given back at the 101 (max_conn_count bounds the pool), and that address's
    visitor connections are still counted."""
    limited = relay_factory(RELAY_MAX_CONNECTIONS_PER_IP=str(VISITOR_CONNECTIONS_PER_IP))
    client = UpgradingTunnelClient(limited)
    held: list[socket.socket] = []
    try:
        pools = client.connect(VISITOR_CONNECTIONS_PER_IP + 2)
        assert limited.sockets(client.name) == len(pools)
        held = [  # visitors from the client's address, up to the limit
            socket.create_connection(("127.0.0.1", limited.port), IO_TIMEOUT_S, (client.source, 0))
            for _ in range(VISITOR_CONNECTIONS_PER_IP)
        ]
        over = limited.get("/api/status", source=client.source)
        assert over.status == 429, over  # its visitors are counted
        assert limited.sockets(client.name) == len(pools)  # and the pool keeps them all
        assert not any(pool.is_closed(timeout=0.3) for pool in pools)
    finally:
        for sock in held:
            sock.close()
        client.close()


def test_an_upgrade_on_a_tunnels_host_is_the_tunnel_apps_request(relay, client):
    pool = client.open()
    relay.wait_for_sockets(client.name, 1)
    upgrade = [("Connection", "Upgrade"), ("Upgrade", "tunnelsite-pool")]
    request, visitor = served(relay, client, pool, f"/api/tunnels/{client.name}/pool", upgrade)
    assert request.target == f"/api/tunnels/{client.name}/pool"
    assert visitor.status == 200  # the app's answer, not a 101 nor a refusal
    assert relay.sockets(client.name) == 1


def test_a_websocket_upgrade_on_the_relays_own_host_is_not_a_pool_upgrade(relay):
    with socket.create_connection(("127.0.0.1", relay.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(
            b"GET /api/tunnels/x/pool HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = sock.recv(4096)
    assert not head.startswith(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tunnelsite-pool"
    )
    assert b"tunnelsite-pool" not in head


def test_our_lt_that_moved_keeps_its_anonymous_tunnel_with_its_secret(relay, client):
    """A laptop that changed networks registers again from another address with its last
    secret: same tunnel, same URL; without the secret that address is another owner (409)."""
    client.connect(1)
    moved = "127.0.0.23"
    thief = relay.get(f"/{client.name}", headers=[("User-Agent", "tunnelsite-lt/x")], source=moved)
    assert thief.status == 409
    old = client.secret
    again = client.register(client.name, source=moved, secret=old)
    assert again["id"] == client.name and client.secret != old
    assert client.upgrade(source=moved).status == 101
    relay.wait_for_sockets(client.name, 1)  # the old address's connection was let go
    stranger = relay.get(
        f"/{client.name}",
        headers=[("User-Agent", "tunnelsite-lt/x"), ("Tunnelsite-Pool-Secret", "0" * 64)],
        source="127.0.0.24",
    )
    assert stranger.status == 409


def lt_headers(client_id: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """Another run of our lt (its own client id), asking for the upgraded pool."""
    return [
        ("User-Agent", "tunnelsite-lt/x"),
        ("X-Tunnelsite-Client", client_id),
        ("X-Tunnelsite-Pool", "upgrade"),
        *extra,
    ]


def test_the_old_address_cannot_take_over_an_anonymous_tunnel_that_moved(relay, client):
    """Review finding 1: once our lt proved itself with its secret from a new address, the
    anonymous tunnel is that address's; another client at the old one (where the laptop
    was) can neither take it over nor register it, and the tunnel keeps serving."""
    old_address = client.source
    client.connect(1)
    moved = fresh_loopback()
    client.register(client.name, source=moved, secret=client.secret)
    (pool,) = client.connect(1, source=moved)
    relay.wait_for_sockets(client.name, 1)
    for target in (f"/{client.name}?takeover=1", f"/{client.name}"):
        taken = relay.get(target, headers=lt_headers("other-client-0001"), source=old_address)
        assert taken.status == 409, taken
    request, answer = served(relay, client, pool)
    assert request.target == "/hello" and answer.status == 200
    assert answer.body == b"from the pool connection"


def test_an_anonymous_tunnel_whose_client_is_connected_is_never_taken_over(relay, client):
    """Clients behind one NAT share an anonymous owner: neither another client's takeover
    nor our lt's own client id without the pool secret moves a connected tunnel."""
    (pool,) = client.connect(1)
    for headers in (
        lt_headers("other-client-0002"),
        lt_headers(client.client_id),  # its id alone is no proof: the secret is
        lt_headers(client.client_id, ("Tunnelsite-Pool-Secret", "0" * 64)),
    ):
        taken = relay.get(f"/{client.name}?takeover=1", headers=headers, source=client.source)
        assert taken.status == 409, taken
        assert "never taken over" in taken.json()["message"]
    request, answer = served(relay, client, pool)
    assert answer.status == 200 and answer.body == b"from the pool connection"
    again = client.register(client.name, secret=client.secret)  # its secret: its own again
    assert again["id"] == client.name


def test_the_relay_probes_idle_upgraded_connections_as_it_does_raw_pool_sockets(relay, client):
    """TCP keepalive on relay.protocol's timing on the relay's end of an upgraded connection
    too, so a client whose network went away frees its name."""
    pool = client.open()
    relay.wait_for_sockets(client.name, 1)
    ours = pool.sock.getsockname()[1]
    shown = subprocess.run(
        ["ss", "-tnoH", "state", "established", f"( sport = :{relay.port} and dport = :{ours} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=IO_TIMEOUT_S,
    ).stdout
    timer = re.search(r"timer:\(keepalive,(\d+)(?:\.\d+)?(m?s)ec", shown)
    assert timer is not None, f"no keepalive timer on the relay's end: {shown!r}"
    left = int(timer.group(1)) / (1000 if timer.group(2) == "ms" else 1)
    assert 0 < left <= POOL_KEEPALIVE_IDLE_S
