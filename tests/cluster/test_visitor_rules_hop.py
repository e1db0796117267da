"""Visitor rules through a cluster hop: the node that owns a tunnel enforces its rules on
requests another node forwards, with the visitor's own address (the hop marker's), and a
team-only ticket is spent once for the whole cluster."""

from __future__ import annotations

import base64
import json

import pytest
from cluster_keys import CLUSTER_SECRET_KEY
from django.test import override_settings
from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.waiting import unique_name, wait_until

from relay import visitor_pass
from relay.protocol import ACCESS_HEADER, TICKET_PATH

BASIC, CIDR, TEAM = unique_name("basic"), unique_name("cidr"), unique_name("team")
# Each tunnel's rules as our lt sends them at registration (its X-Tunnelsite-Access header).
RULES = {
    BASIC: {"basic_auth": ["ann:s3cret"]},
    CIDR: {"cidr_deny": ["127.0.0.9/32"]},
    TEAM: {"private": True},
}
OWNER_TOKEN = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken
owner = get_user_model().objects.create_user("hop-owner")
print(owner.pk, ApiToken.issue(owner, name="t")[1])
"""


@pytest.fixture(scope="module")
def nodes(cluster):
    return cluster.start("alpha"), cluster.start("bravo")


@pytest.fixture(scope="module")
def owned(cluster, nodes):
    """The three tunnels, each held by a fake client on bravo with the owner's token and its
    rules, known to alpha."""
    alpha, bravo = nodes
    owner_id, token = cluster.manage("shell", "-c", OWNER_TOKEN).strip().splitlines()[-1].split()
    clients = {
        name: FakeTunnelClient(
            bravo,
            name,
            headers=[("Authorization", f"Bearer {token}"), (ACCESS_HEADER, json.dumps(rules))],
        )
        for name, rules in RULES.items()
    }
    pools = {name: client.connect(1)[0] for name, client in clients.items()}
    for name in RULES:  # a visitor the gate refuses: nothing reaches the pool sockets
        wait_until(
            lambda name=name: alpha.get("/", name=name, source="127.0.0.9").status != 404,
            15,
            f"{name} on alpha",
        )
    try:
        yield pools, int(owner_id)
    finally:
        for client in clients.values():
            client.close()


def test_basic_auth_is_checked_by_the_owner_and_the_password_never_reaches_the_app(nodes, owned):
    pools, owner_id = owned
    alpha, _ = nodes
    assert alpha.get("/", name=BASIC).status == 401
    auth = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    with alpha.visitor(BASIC) as visitor:
        visitor.send(build_request("GET", "/in", alpha.host(BASIC), [("Authorization", auth)]))
        request = pools[BASIC].read_request()
        assert "authorization" not in request.header_names()
        pools[BASIC].respond(200, b"in")
        assert visitor.response().body == b"in"


def test_cidr_rules_see_the_visitor_not_the_forwarding_node(nodes, owned):
    pools, owner_id = owned
    alpha, _ = nodes
    assert alpha.get("/", name=CIDR, source="127.0.0.9").status == 403
    with alpha.visitor(CIDR, source="127.0.0.10") as visitor:
        visitor.send(build_request("GET", "/ok", alpha.host(CIDR)))
        assert pools[CIDR].read_request().header("x-real-ip") == "127.0.0.10"
        pools[CIDR].respond(200, b"ok")
        assert visitor.response().status == 200


def test_a_ticket_is_good_once_across_the_cluster(nodes, owned):
    pools, owner_id = owned
    alpha, bravo = nodes
    with override_settings(SECRET_KEY=CLUSTER_SECRET_KEY):
        ticket = visitor_pass.issue_ticket(TEAM, owner_id, owner_user_id=owner_id)
    target = f"{TICKET_PATH}?ticket={ticket}&next=/"
    first = alpha.get(target, name=TEAM)
    assert first.status == 303, first
    assert first.header("set-cookie").startswith("tunnelsite_access=")
    assert bravo.get(target, name=TEAM).status == 403
    assert alpha.get(target, name=TEAM).status == 403
    cookie = first.header("set-cookie").split(";")[0]
    with alpha.visitor(TEAM) as visitor:
        visitor.send(build_request("GET", "/", alpha.host(TEAM), [("Cookie", cookie)]))
        assert "cookie" not in pools[TEAM].read_request().header_names()
        pools[TEAM].respond(200, b"team")
        assert visitor.response().body == b"team"
