"""A client may reach any node: it reclaims its own name through another node than the one
that holds it, and its DELETE and status requests reach the node that owns its tunnel."""

from __future__ import annotations

import time

import pytest
from harness.fake_client import FakeTunnelClient, PoolSocket
from harness.relay import issue_token
from harness.waiting import unique_name, wait_until
from test_two_nodes import _reaches

pytestmark = pytest.mark.timeout(120)

OTHER_IP = "127.0.0.2"  # another anonymous owner (loopback, so no setup needed)


@pytest.fixture(scope="module")
def accounts(cluster) -> dict[str, str]:
    """A token of a user whose plan allows one live tunnel, and a signed-in superuser's
    session key, made in one management shell (each costs a Django start-up)."""
    out = cluster.manage(
        "shell",
        "-c",
        "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY\n"
        "from django.contrib.auth.models import User\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "from tunnels.models import Account, ApiToken, Plan\n"
        "user = User.objects.create_user('one-tunnel')\n"
        "plan = Plan.objects.create(name='one', max_live_tunnels=1)\n"
        "Account.objects.create(user=user, plan=plan)\n"
        "admin = User.objects.create_superuser('operator', password='pw-for-tests-only')\n"
        "session = SessionStore()\n"
        "session[SESSION_KEY] = str(admin.pk)\n"
        "session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "session[HASH_SESSION_KEY] = admin.get_session_auth_hash()\n"
        "session.create()\n"
        "print('TOKEN', ApiToken.issue(user)[1], 'SESSION', session.session_key)\n",
    )
    words = out.split()
    return {"token": words[words.index("TOKEN") + 1], "session": words[words.index("SESSION") + 1]}


def _reaches_everywhere(nodes, client: FakeTunnelClient, pool: PoolSocket) -> None:
    for node in nodes:
        wait_until(lambda node=node: _reaches(node, client, pool), 5, f"{node.name} to reach it")


# --- reclaiming a name across nodes ----------------------------------------------------------
def test_a_client_reclaims_its_name_through_another_node_within_the_grace(two_nodes, db_rows):
    alpha, bravo = two_nodes
    old = FakeTunnelClient(alpha)
    old.connect(1)
    old.close()  # the client lost its connection; alpha keeps the name for the grace (15 s)
    alpha.wait_for_sockets(old.name, 0)

    started = time.monotonic()
    new = FakeTunnelClient(bravo, old.name, old.source)  # the same owner; asserts a 200
    took = time.monotonic() - started
    try:
        assert new.name == old.name
        assert took < 2.0, f"{took:.2f} s: the release was waited out, not answered"
        (pool,) = new.connect(1)
        assert db_rows(new.name) == [("alpha", False, "reclaimed on bravo"), ("bravo", True, "")]
        assert alpha.get(f"/api/tunnels/{new.name}/status").json()["node"] == "bravo"
        _reaches_everywhere(two_nodes, new, pool)
    finally:
        new.close()
    print(f"\nreclaim through another node: 200 after {took:.3f} s")


def test_a_second_client_gets_409_while_the_first_is_connected_elsewhere_unless_it_takes_over(
    two_nodes, db_rows
):
    """Two live clients never share a name (issue 10 item 5), across nodes too."""
    alpha, bravo = two_nodes
    anonymous = FakeTunnelClient(bravo)
    try:  # an anonymous tunnel is never taken over while its client is connected
        (held,) = anonymous.connect(1)
        assert alpha.get(f"/{anonymous.name}?takeover=1", source=anonymous.source).status == 409
        assert not held.is_closed(timeout=0.3)
    finally:
        anonymous.close()
    auth = [("Authorization", f"Bearer {issue_token(alpha, unique_name('taker'), 'laptop')}")]
    old = FakeTunnelClient(bravo, headers=auth)
    new: FakeTunnelClient | None = None
    try:
        (old_pool,) = old.connect(1)
        assert (
            alpha.get(f"/{old.name}", headers=auth, source=old.source).status == 409
        )  # bravo keeps its connected client
        assert not old_pool.is_closed(timeout=0.3)
        new = FakeTunnelClient(alpha, f"{old.name}?takeover=1", old.source, headers=auth)
        assert old_pool.is_closed(timeout=2.0)
        (pool,) = new.connect(1)
        assert db_rows(new.name) == [("bravo", False, "reclaimed on alpha"), ("alpha", True, "")]
        _reaches_everywhere(two_nodes, new, pool)
    finally:
        old.close()
        if new is not None:
            new.close()


def test_another_owner_still_gets_a_409_at_once_and_the_holder_keeps_its_tunnel(two_nodes, db_rows):
    alpha, bravo = two_nodes
    holder = FakeTunnelClient(alpha)
    try:
        (pool,) = holder.connect(1)
        started = time.monotonic()
        assert bravo.register(holder.name, source=OTHER_IP).status == 409
        assert time.monotonic() - started < 1.0  # no release asked, nothing waited for
        assert db_rows(holder.name) == [("alpha", True, "")]
        assert alpha.sockets(holder.name) == 1
        assert not pool.is_closed(timeout=0.3)
        _reaches_everywhere(two_nodes, holder, pool)
    finally:
        holder.close()


def test_a_user_at_the_limit_of_one_tunnel_reclaims_it_through_another_node(
    two_nodes, accounts, db_rows
):
    """The old row is the one being replaced: it does not count against the plan."""
    alpha, bravo = two_nodes
    # The same client (our lt's per-run id) registering again, through another node.
    auth = [("Authorization", f"Bearer {accounts['token']}"), ("X-Tunnelsite-Client", "lt-0001x")]
    name = unique_name("mine")
    assert alpha.get(f"/{name}", headers=auth).status == 200
    assert bravo.get(f"/{unique_name('second')}", headers=auth).status == 429
    assert bravo.get(f"/{name}", headers=auth).status == 200
    assert db_rows(name) == [("alpha", False, "reclaimed on bravo"), ("bravo", True, "")]
    # The same name from an anonymous client on the same address is another owner's.
    assert alpha.register(name).status == 409
    assert bravo.request("DELETE", f"/api/tunnels/{name}", headers=auth).status == 204


# --- the tunnel API on any node ------------------------------------------------------------
def test_status_and_delete_through_a_node_that_does_not_own_the_tunnel_reach_the_owner(
    two_nodes, db_rows
):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    try:
        pools = client.connect(2)
        path = f"/api/tunnels/{client.name}"
        status = wait_until(
            lambda: (a := alpha.get(f"{path}/status")).status == 200 and a,
            5,
            "alpha to forward the status request",
        )
        assert status.json() == {"connected_sockets": 2, "node": "bravo"}

        # The owner checks the owner: the hop marker carries the client's address.
        assert alpha.request("DELETE", path, source=OTHER_IP).status == 403
        assert db_rows(client.name) == [("bravo", True, "")]

        assert alpha.request("DELETE", path, source=client.source).status == 204
        assert all(pool.is_closed(timeout=2.0) for pool in pools)
        wait_until(
            lambda: db_rows(client.name) == [("bravo", False, "closed by client")],
            2,
            "the row to be closed",
        )
        assert alpha.get(f"{path}/status").status == 404
        assert alpha.request("DELETE", path).status == 404
        assert alpha.register(client.name).status == 200  # the name is free at once
    finally:
        client.close()


def test_the_tunnel_api_for_a_name_nobody_owns_is_a_404_on_every_node(two_nodes):
    name = unique_name("nobody")
    for node in two_nodes:
        assert node.get(f"/api/tunnels/{name}/status").status == 404
        assert node.request("DELETE", f"/api/tunnels/{name}").status == 404


# --- the dashboard ---------------------------------------------------------------------------
def test_a_nodes_dashboard_lists_the_tunnels_of_the_other_node_and_both_nodes_load(
    two_nodes, accounts
):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    try:
        client.connect(1)
        cookie = [("Cookie", f"sessionid={accounts['session']}")]

        def listed() -> dict | None:
            answer = alpha.get("/admin/dashboard/data", headers=cookie)
            assert answer.status == 200, answer
            data = answer.json()
            return data if client.name in data["live"] else None

        data = wait_until(listed, 5, "alpha's dashboard to list bravo's tunnel")
        assert data["node"] == "alpha"
        assert data["live_nodes"][client.name] == "bravo"
        nodes = {node["name"]: node for node in data["nodes"]}
        assert {"alpha", "bravo"} <= nodes.keys()
        for node in two_nodes:
            assert nodes[node.name]["alive"] and nodes[node.name]["address"] == node.advertise
        assert f'data-name="{client.name}"' in data["tunnels_html"]

        def bravo_sockets() -> int:
            data = alpha.get("/admin/dashboard/data", headers=cookie).json()
            return {node["name"]: node for node in data["nodes"]}["bravo"]["sockets"]

        wait_until(lambda: bravo_sockets() >= 1, 5, "bravo's heartbeat to count the socket")
    finally:
        client.close()
