"""Visitor rules set by our `lt`'s real flags, through a cluster hop: the tunnel is held on
node alpha, visitors come to node bravo, which forwards to alpha. The owner node enforces
the rules with the visitor's real address, and a team-only pass obtained on bravo's bare
domain works when the visit is forwarded (PostgreSQL + Redis, no test double)."""

from __future__ import annotations

import json
from urllib.parse import urlencode, urlsplit

import pytest
from harness.visitor_access import (
    BROWSER,
    PASSWORD,
    assert_clean,
    basic,
    received,
    sign_in,
    sign_out,
    team_pass,
)
from harness.waiting import wait_until

from relay import protocol

SETUP = f"""
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from tunnels.models import ApiToken
User = get_user_model()
team = Group.objects.create(name="cluster-team")
tokens = {{}}
for username in ("owner", "mate", "other"):
    user = User.objects.create_user(username, password={PASSWORD!r})
    tokens[username] = ApiToken.issue(user, name="e2e")[1]
    if username != "other":
        user.groups.add(team)
print(json.dumps(tokens))
"""


@pytest.fixture(scope="module")
def nodes(cluster):
    return cluster.start("alpha"), cluster.start("bravo")


@pytest.fixture(scope="module")
def tokens(cluster, nodes) -> dict[str, str]:
    return json.loads(cluster.manage("shell", "-c", SETUP).strip().splitlines()[-1])


def on_alpha(nodes, our_launcher, local_app, token: str, *flags: str) -> str:
    """Our lt registered on alpha with `flags`; its name, once bravo forwards to it."""
    alpha, bravo = nodes
    name = our_launcher(alpha, local_app.port, "--token", token, *flags).name
    wait_until(
        lambda: bravo.get("/headers", name=name, source="127.0.0.9").status != 404,
        15,
        f"{name} reachable through bravo",
    )
    return name


def test_cidr_and_basic_auth_are_enforced_by_the_owner_with_the_visitors_address(
    nodes, tokens, our_launcher, local_app
):
    _, bravo = nodes
    flags = ("--cidr-allow", "127.0.0.0/30", "--basic-auth", "ann:s3cret")
    name = on_alpha(nodes, our_launcher, local_app, tokens["owner"], *flags)
    # Bravo connects to alpha from 127.0.0.1, which is inside: the refusal is the visitor's.
    outside = bravo.get("/headers", name=name, source="127.0.0.9", headers=[basic("ann:s3cret")])
    assert outside.status == 403
    assert bravo.get("/headers", name=name, source="127.0.0.2").status == 401
    inside = bravo.get("/headers", name=name, source="127.0.0.2", headers=[basic("ann:s3cret")])
    seen = received(inside)
    assert_clean(seen)
    assert seen["x-real-ip"] == ["127.0.0.2"]


def test_a_team_pass_from_bravos_bare_domain_works_when_forwarded_to_alpha(
    nodes, tokens, our_launcher, local_app
):
    alpha, bravo = nodes
    name = on_alpha(nodes, our_launcher, local_app, tokens["owner"], "--private")
    assert bravo.get("/headers", name=name).status == 401
    session = sign_in(bravo, "mate")
    exchanged, cookie = team_pass(bravo, name, session)
    assert cookie is not None, exchanged
    for node in (bravo, alpha):
        seen = received(node.get("/headers", name=name, headers=[("Cookie", f"{cookie}; k=v")]))
        assert_clean(seen)
        assert seen["cookie"] == ["k=v"]
    refused, none = team_pass(bravo, name, sign_in(bravo, "other"))
    assert refused.status == 403 and none is None
    # Signing out on bravo ends the pass on alpha too (a control message over Redis).
    sign_out(bravo, session)
    wait_until(
        lambda: alpha.get("/headers", name=name, headers=[("Cookie", cookie)]).status == 401,
        10,
        "the signed-out pass refused on alpha",
    )
    assert bravo.get("/headers", name=name, headers=[("Cookie", cookie)]).status == 401


def test_a_ticket_is_refused_on_another_tunnel_and_when_replayed(
    nodes, tokens, our_launcher, local_app
):
    alpha, bravo = nodes
    name = on_alpha(nodes, our_launcher, local_app, tokens["owner"], "--private")
    other = on_alpha(nodes, our_launcher, local_app, tokens["owner"], "--private")
    query = urlencode({"tunnel": name, "next": "/"})
    session = sign_in(bravo, "owner")
    visit = bravo.get(f"{protocol.TEAM_SIGNIN_PATH}?{query}", headers=[("Cookie", session)])
    assert visit.status == 302, visit
    back = urlsplit(visit.header("location") or "")
    target = f"{back.path}?{back.query}"
    assert bravo.get(target, name=other, headers=BROWSER).status == 403
    assert bravo.get(target, name=name, headers=BROWSER).status == 303
    assert bravo.get(target, name=name, headers=BROWSER).status == 403
    assert alpha.get(target, name=name, headers=BROWSER).status == 403
