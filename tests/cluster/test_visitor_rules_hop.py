"""Visitor rules through a cluster hop: the node that owns a tunnel enforces its rules on
requests another node forwards, with the visitor's own address (the hop marker's), and a
team-only ticket is spent once for the whole cluster."""

from __future__ import annotations

import base64

import pytest
from cluster_keys import CLUSTER_SECRET_KEY
from django.test import override_settings
from harness.access_relay import rules_env, staff_user
from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.waiting import unique_name, wait_until

from relay import visitor_pass
from relay.protocol import TICKET_PATH

BASIC, CIDR, TEAM = unique_name("basic"), unique_name("cidr"), unique_name("team")
RULES = {
    BASIC: {"basic_auth": ["ann:s3cret"]},
    CIDR: {"cidr_deny": ["127.0.0.9/32"]},
    TEAM: {"team": True},
}


@pytest.fixture(scope="module")
def nodes(cluster):
    env = rules_env(RULES)
    return cluster.start("alpha", **env), cluster.start("bravo", **env)


@pytest.fixture(scope="module")
def owned(nodes):
    """The three tunnels, each held by a fake client on bravo, known to alpha."""
    alpha, bravo = nodes
    clients = {name: FakeTunnelClient(bravo, name) for name in RULES}
    pools = {name: client.connect(1)[0] for name, client in clients.items()}
    for name in RULES:  # a visitor the gate refuses: nothing reaches the pool sockets
        wait_until(
            lambda name=name: alpha.get("/", name=name, source="127.0.0.9").status != 404,
            15,
            f"{name} on alpha",
        )
    try:
        yield pools
    finally:
        for client in clients.values():
            client.close()


def test_basic_auth_is_checked_by_the_owner_and_the_password_never_reaches_the_app(nodes, owned):
    alpha, _ = nodes
    assert alpha.get("/", name=BASIC).status == 401
    auth = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    with alpha.visitor(BASIC) as visitor:
        visitor.send(build_request("GET", "/in", alpha.host(BASIC), [("Authorization", auth)]))
        request = owned[BASIC].read_request()
        assert "authorization" not in request.header_names()
        owned[BASIC].respond(200, b"in")
        assert visitor.response().body == b"in"


def test_cidr_rules_see_the_visitor_not_the_forwarding_node(nodes, owned):
    alpha, _ = nodes
    assert alpha.get("/", name=CIDR, source="127.0.0.9").status == 403
    with alpha.visitor(CIDR, source="127.0.0.10") as visitor:
        visitor.send(build_request("GET", "/ok", alpha.host(CIDR)))
        assert owned[CIDR].read_request().header("x-real-ip") == "127.0.0.10"
        owned[CIDR].respond(200, b"ok")
        assert visitor.response().status == 200


def test_a_ticket_is_good_once_across_the_cluster(nodes, owned):
    alpha, bravo = nodes
    staff = staff_user(bravo, unique_name("staff"))  # the owner node asks whether it still may
    with override_settings(SECRET_KEY=CLUSTER_SECRET_KEY):
        ticket = visitor_pass.issue_ticket(TEAM, staff, owner_user_id=None)
    target = f"{TICKET_PATH}?ticket={ticket}&next=/"
    first = alpha.get(target, name=TEAM)
    assert first.status == 303, first
    assert first.header("set-cookie").startswith("tunnelsite_access=")
    assert bravo.get(target, name=TEAM).status == 403
    assert alpha.get(target, name=TEAM).status == 403
    cookie = first.header("set-cookie").split(";")[0]
    with alpha.visitor(TEAM) as visitor:
        visitor.send(build_request("GET", "/", alpha.host(TEAM), [("Cookie", cookie)]))
        assert "cookie" not in owned[TEAM].read_request().header_names()
        owned[TEAM].respond(200, b"team")
        assert visitor.response().body == b"team"
