"""Two relay nodes on one PostgreSQL database and one Redis: any node serves any tunnel,
one name has one owner cluster-wide, and the admin reaches the owning node."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
from cluster_keys import mint
from harness.fake_client import FakeTunnelClient, PoolSocket
from harness.http import build_request
from harness.waiting import unique_name, wait_until
from harness.websocket import run_visitors, run_websocket
from websockets.asyncio.client import ClientConnection

pytestmark = pytest.mark.timeout(120)


def _reaches(node, client: FakeTunnelClient, pool: PoolSocket) -> bool:
    """One GET on `node` for the fake client's tunnel: True when it reached the pool socket
    (answered there), False when the node answered 404 itself (it does not know yet)."""
    with node.visitor(client.name) as visitor:
        visitor.send(build_request("GET", "/probe", node.host(client.name)))
        try:
            pool.read_request(timeout=1.0)
        except TimeoutError:
            assert visitor.response().status == 404
            return False
        pool.respond(200, b"probe")
        return visitor.response().status == 200


# --- any node serves any tunnel --------------------------------------------------------------
def test_a_request_on_another_node_reaches_the_owner_and_comes_back(two_nodes, db_rows):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    try:
        assert db_rows(client.name) == [("bravo", True, "")]
        (pool,) = client.connect(1)
        # alpha learns the owner from bravo's announcement, a few ms after the registration
        # (a visit before it is a 404, as for any name alpha does not know yet).
        wait_until(lambda: _reaches(alpha, client, pool), 5, "alpha to learn the owner")
        with alpha.visitor(client.name) as visitor:
            for i in range(3):  # one visitor connection, three requests: the hop keeps up
                visitor.send(
                    f"GET /item/{i}?q=1 HTTP/1.1\r\nHost: {alpha.host(client.name)}\r\n"
                    "X-Tunnelsite-Hop: 1 forged - 0 nope\r\n\r\n".encode()
                )
                request = pool.read_request()
                assert request.target == f"/item/{i}?q=1"
                assert request.header("host") == alpha.host(client.name)
                assert request.header("x-forwarded-for") == "127.0.0.1"
                assert request.header("x-real-ip") == "127.0.0.1"  # the visitor, not a node
                assert "x-tunnelsite-hop" not in request.header_names()
                pool.respond(200, f"answer {i}".encode(), ["X-App: yes"])
                answer = visitor.response()
                assert (answer.status, answer.body) == (200, f"answer {i}".encode())
                assert answer.header("x-app") == "yes"
    finally:
        client.close()


def test_a_request_with_a_valid_hop_marker_that_misses_is_a_404_not_a_loop(two_nodes):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    try:
        (pool,) = client.connect(1)
        wait_until(lambda: _reaches(alpha, client, pool), 5, "alpha to learn the owner")
        host = alpha.host(client.name)
        marker = mint("bravo", ("127.0.0.1", 1), b"GET /|" + host.encode())
        answer = alpha.get("/", name=client.name, headers=[("X-Tunnelsite-Hop", marker)])
        assert answer.status == 404
    finally:
        client.close()


def test_an_unknown_name_is_a_404_on_every_node(two_nodes):
    for node in two_nodes:
        assert node.get("/", name=unique_name("nobody")).status == 404


def test_a_multi_mib_upload_and_download_cross_nodes_intact(
    two_nodes, local_app, module_lt_factory
):
    alpha, bravo = two_nodes
    lt = module_lt_factory(bravo, local_app.port, subdomain=unique_name("big"))
    wait_until(lambda: alpha.get("/hello", name=lt.name).status == 200, 5, "a forward")
    body = os.urandom(8 * 1024 * 1024)
    answer = alpha.request("POST", "/sha256", name=lt.name, body=body)
    assert answer.status == 200, answer
    assert answer.json() == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}

    size = 6 * 1024 * 1024 + 7
    answer = alpha.get(f"/bytes/{size}", name=lt.name)
    assert answer.status == 200 and answer.complete
    expected = (bytes(range(251)) * (size // 251 + 1))[:size]
    assert hashlib.sha256(answer.body).hexdigest() == hashlib.sha256(expected).hexdigest()

    answer = alpha.get("/chunked", name=lt.name)
    assert answer.body == b"first chunk\nsecond chunk\nthird and last chunk\n"


def test_a_websocket_on_another_node_echoes_through_the_owner(
    two_nodes, local_app, module_lt_factory
):
    alpha, bravo = two_nodes
    lt = module_lt_factory(bravo, local_app.port, subdomain=unique_name("ws"))
    wait_until(lambda: alpha.get("/hello", name=lt.name).status == 200, 5, "a forward")
    payload = os.urandom(200_000)

    async def session(ws: ClientConnection) -> tuple[object, object, int | None]:
        await ws.send("héllo across nodes")
        text = await ws.recv()
        await ws.send(payload)
        data = await ws.recv()
        await ws.send("close-app")
        await ws.wait_closed()
        return text, data, ws.close_code

    text, data, code = run_websocket(alpha, lt.name, session)
    assert text == "héllo across nodes"
    assert data == payload
    assert code == 4001


# --- one name, one owner -----------------------------------------------------------------
def test_two_nodes_racing_for_one_name_give_it_to_exactly_one_100_times(two_nodes, db_rows):
    alpha, bravo = two_nodes
    for _ in range(100):
        name = unique_name("race")
        barrier = threading.Barrier(2, timeout=10)
        statuses: dict[str, int] = {}

        def claim(node, name=name, barrier=barrier, statuses=statuses) -> None:
            # Two owners (a client of the same owner would take the name over instead).
            with node.visitor(source="127.0.0.1" if node is alpha else "127.0.0.2") as visitor:
                barrier.wait()
                statuses[node.name] = visitor.request("GET", f"/{name}").status

        threads = [threading.Thread(target=claim, args=(node,)) for node in two_nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert sorted(statuses.values()) == [200, 409], statuses
        winner = next(n for n, s in statuses.items() if s == 200)
        loser = alpha if winner == "bravo" else bravo
        assert db_rows(name) == [(winner, True, "")]
        # The loser rolled its claim back: it forwards the name (and its status request,
        # once it has heard of the winner) instead of owning it.
        status = loser.get(f"/api/tunnels/{name}/status")
        assert status.status == 404 or status.json()["node"] == winner, status


def test_one_owner_racing_itself_on_two_nodes_ends_with_one_live_tunnel_20_times(
    two_nodes, db_rows
):
    alpha, bravo = two_nodes
    for _ in range(20):
        name = unique_name("self")
        barrier = threading.Barrier(2, timeout=10)
        statuses: dict[str, int] = {}

        def claim(node, name=name, barrier=barrier, statuses=statuses) -> None:
            with node.visitor() as visitor:
                barrier.wait()
                statuses[node.name] = visitor.request("GET", f"/{name}").status

        threads = [threading.Thread(target=claim, args=(node,)) for node in two_nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert 200 in statuses.values() and set(statuses.values()) <= {200, 409}, statuses
        rows = db_rows(name)
        live = [node for node, is_live, _ in rows if is_live]
        assert len(live) == 1 and statuses[live[0]] == 200, (statuses, rows)
        other = alpha if live[0] == "bravo" else bravo
        status = other.get(f"/api/tunnels/{name}/status")
        assert status.status == 404 or status.json()["node"] == live[0], status


# --- quotas ------------------------------------------------------------------------------------
def test_the_live_tunnel_limit_of_a_user_holds_across_nodes(cluster, two_nodes):
    alpha, bravo = two_nodes
    token = cluster.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from tunnels.models import Account, ApiToken, Plan\n"
        "user = User.objects.create_user('quota-user')\n"
        "plan = Plan.objects.create(name='two', max_live_tunnels=2)\n"
        "Account.objects.create(user=user, plan=plan)\n"
        "print(ApiToken.issue(user)[1])\n",
    ).split()[-1]  # the shell may say how many objects it imported first
    auth = [("Authorization", f"Bearer {token}")]
    names = [unique_name("quota") for _ in range(6)]
    barrier = threading.Barrier(len(names), timeout=10)
    statuses: dict[str, int] = {}

    def claim(index: int) -> None:
        node = two_nodes[index % 2]
        with node.visitor() as visitor:
            barrier.wait()
            statuses[names[index]] = visitor.request("GET", f"/{names[index]}", auth).status

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(statuses.values()) == [200, 200, 429, 429, 429, 429], statuses
    live = cluster.query(
        "SELECT count(*) FROM tunnels_tunnel t JOIN auth_user u ON u.id = t.owner_id "
        "WHERE u.username = 'quota-user' AND t.is_live"
    )
    assert live == [(2,)]
    for node in two_nodes:
        assert node.get(f"/{unique_name('quota')}", headers=auth).status == 429


# --- control from the admin ------------------------------------------------------------------
def test_an_admin_disconnect_sent_from_one_node_closes_the_tunnel_on_the_other(
    cluster, two_nodes, db_rows
):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    try:
        (pool,) = client.connect(1)
        started = time.monotonic()
        # What the admin does when it is served by alpha: tunnels/control.py, alpha's settings.
        cluster.manage(
            "shell",
            "-c",
            f"from tunnels.control import close_tunnels; close_tunnels([{client.name!r}], 'x')",
        )
        sent = time.monotonic()
        assert pool.is_closed(timeout=2.0)
        wait_until(lambda: db_rows(client.name) == [("bravo", False, "x")], 2.0, "row closed")
        print(
            f"\nadmin disconnect: closed on the owner {time.monotonic() - sent:.3f} s after "
            f"the message was sent ({sent - started:.1f} s to start the sending process)"
        )
        wait_until(lambda: alpha.get("/", name=client.name).status == 404, 2.0, "alpha 404")
    finally:
        client.close()


# --- operations ----------------------------------------------------------------------------
def test_each_node_answers_healthz_with_its_name(two_nodes):
    for node in two_nodes:
        answer = node.get("/healthz")
        assert answer.status == 200
        body = answer.json()
        assert body["node"] == node.name and body["draining"] is False
        assert isinstance(body["tunnels"], int)


def test_nodes_write_heartbeats_with_their_address_and_load(cluster, two_nodes):
    rows = dict(
        (name, (advertise, age))
        for name, advertise, age in cluster.query(
            "SELECT name, advertise, extract(epoch FROM now() - last_heartbeat) FROM tunnels_node"
        )
    )
    for node in two_nodes:
        advertise, age = rows[node.name]
        assert advertise == node.advertise == f"127.0.0.1:{node.port}"
        assert age < 5


def test_idle_websockets_through_another_node_leave_plain_requests_a_socket(
    two_nodes, local_app, module_lt_factory
):
    alpha, bravo = two_nodes
    lt = module_lt_factory(bravo, local_app.port, subdomain=unique_name("idle"))
    wait_until(lambda: alpha.get("/hello", name=lt.name).status == 200, 5, "a forward")
    sources = [f"127.0.0.{2 + i}" for i in range(10)]

    # The owner counts each visitor by the address the hop marker names, and its refusals
    # (503 and a message) reach the visitor through the node they connected to.
    opened, refused, answer, elapsed, echoes = run_visitors(alpha, lt.name, sources)

    assert (answer.status, elapsed < 3.0) == (200, True)
    assert opened and refused and {status for _, status in refused} == {503}
    assert echoes == ["still here"] * len(opened)
