"""Visitor access across the merged parts of issue 13, with real processes only: the relay
(runrelay, Daphne), our `lt` with its real flags (--basic-auth, --cidr-allow, --cidr-deny,
--private), the npm client, the local app that echoes the headers it received, and policy rows
(Plan, ReservedSubdomain) written into the relay's own database with `manage.py shell`.

Per rule and per visitor (the owner with a Bearer API token, a teammate sharing a Django group
with the owner, another user, an anonymous visitor): the status each gets, and that the app
never sees an Authorization header the relay accepted nor a tunnelsite cookie."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import pytest
from harness.our_client import OurLtLauncher
from harness.processes import ProcessGroup
from harness.relay import NO_LIVE_TUNNEL_CAP, NPM_LT, LocalApp, Relay, manage
from harness.visitor_access import (
    BROWSER,
    PASSWORD,
    assert_clean,
    basic,
    bearer,
    received,
    sign_in,
    sign_out,
    team_pass,
    upgrade_status,
)
from harness.waiting import unique_name, wait_until

from relay import protocol

BASIC_PAIR = "ann:s3cret wörd"

# Users (owner and mate share a group, other does not), one token each, and the policy rows:
# a plan that says team-only, one that requires visitor auth, and a reserved name whose
# policy allows only 127.0.0.1.
SETUP = f"""
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from tunnels.models import Account, ApiToken, Plan, ReservedSubdomain
User = get_user_model()
team = Group.objects.create(name="team")
tokens = {{}}
for username in ("owner", "mate", "other", "teamplan", "required", "reserver"):
    user = User.objects.create_user(username, password={PASSWORD!r})
    tokens[username] = ApiToken.issue(user, name="e2e")[1]
for username in ("owner", "mate"):
    User.objects.get(username=username).groups.add(team)
team_plan = Plan.objects.create(name="team-plan", max_live_tunnels=0, visitor_auth="team")
required = Plan.objects.create(name="required", max_live_tunnels=0, visitor_auth="required")
Account.objects.create(user=User.objects.get(username="teamplan"), plan=team_plan)
Account.objects.create(user=User.objects.get(username="required"), plan=required)
ReservedSubdomain.objects.create(
    name="only-loopback-one", user=User.objects.get(username="reserver"),
    cidr_allow="127.0.0.1/32",
)
print(json.dumps(tokens))
"""


@pytest.fixture(scope="module")
def relay(module_relay_factory) -> Relay:
    return module_relay_factory(**NO_LIVE_TUNNEL_CAP)


@pytest.fixture(scope="module")
def tokens(relay: Relay) -> dict[str, str]:
    return json.loads(manage(relay, "shell", "-c", SETUP).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def npm_group() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


def ours(
    launcher: OurLtLauncher, relay: Relay, app: LocalApp, token: str | None, *flags: str
) -> str:
    """Our lt with `flags` (and `token`), online; the tunnel's name."""
    args = [*flags, "--token", token] if token else list(flags)
    return launcher(relay, app.port, *args).name


def npm(group: ProcessGroup, relay: Relay, app: LocalApp, token: str, subdomain: str = "") -> str:
    """The npm client with `token` (in the host's user part, sent as HTTP basic), online."""
    args = [
        str(NPM_LT),
        "--port",
        str(app.port),
        "--host",
        f"http://{token}@localhost:{relay.port}",
    ]
    if subdomain:
        args += ["--subdomain", subdomain]
    process = group.start(args, {**os.environ}, name="npm lt")
    url = process.wait_for_line(r"your url is: (\S+)").group(1)
    name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
    relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
    return name


# --- basic auth and CIDR through our lt's flags --------------------------------------------
def test_basic_auth_per_visitor_and_the_app_never_sees_the_password(
    relay, tokens, local_app, our_launcher
):
    name = ours(our_launcher, relay, local_app, tokens["owner"], "--basic-auth", BASIC_PAIR)
    for who, headers in (
        ("anonymous", []),
        ("the owner's token", [bearer(tokens["owner"])]),
        ("a teammate's token", [bearer(tokens["mate"])]),
        ("a wrong password", [basic("ann:wrong")]),
    ):
        answer = relay.get("/headers", name=name, headers=headers)
        assert answer.status == 401, who
        assert answer.header("www-authenticate") == f'Basic realm="{name}", charset="UTF-8"'
    good = relay.get("/headers", name=name, headers=[basic(BASIC_PAIR), ("Cookie", "app=1")])
    seen = received(good)
    assert_clean(seen)
    assert seen["cookie"] == ["app=1"]
    assert upgrade_status(relay, name) == 401
    assert upgrade_status(relay, name, [basic(BASIC_PAIR)]) == 101
    assert "s3cret" not in relay.process.output()


def test_cidr_allow_admits_only_its_addresses_whoever_the_visitor_is(
    relay, tokens, local_app, our_launcher
):
    name = ours(our_launcher, relay, local_app, tokens["owner"], "--cidr-allow", "127.0.0.1/32")
    assert received(relay.get("/headers", name=name)) is not None
    for headers in ([], [bearer(tokens["owner"])]):
        refused = relay.get(
            "/headers",
            name=name,
            source="127.0.0.2",
            headers=[("Accept", "application/json"), *headers],
        )
        assert refused.status == 403, headers
        assert "(127.0.0.2)" in refused.json()["message"]


def test_cidr_deny_refuses_its_addresses_and_no_one_else(relay, local_app, our_launcher):
    name = ours(our_launcher, relay, local_app, None, "--cidr-deny", "127.0.0.9/32")
    assert relay.get("/headers", name=name, source="127.0.0.9").status == 403
    assert relay.get("/headers", name=name, source="127.0.0.10").status == 200
    assert upgrade_status(relay, name) == 101


# --- team-only -----------------------------------------------------------------------------
def test_team_only_by_bearer_token_owner_and_teammate_in_others_out(
    relay, tokens, local_app, our_launcher
):
    name = ours(our_launcher, relay, local_app, tokens["owner"], "--private")
    for who in ("owner", "mate"):
        seen = received(relay.get("/headers", name=name, headers=[bearer(tokens[who])]))
        assert_clean(seen)
    for headers in ([bearer(tokens["other"])], [bearer("lt_not-a-token")], []):
        answer = relay.get("/headers", name=name, headers=headers)
        assert answer.status == 401, headers
        assert answer.header("www-authenticate") == f'Bearer realm="{name}"'


def test_team_only_sign_in_per_user_and_the_cookie_stays_on_its_tunnel(
    relay, tokens, local_app, our_launcher
):
    name = ours(our_launcher, relay, local_app, tokens["owner"], "--private")
    other_tunnel = ours(our_launcher, relay, local_app, tokens["owner"], "--private")
    browser = relay.get("/headers", name=name, headers=BROWSER)
    assert browser.status == 302
    assert urlsplit(browser.header("location") or "").path == protocol.TEAM_SIGNIN_PATH
    for who in ("owner", "mate"):
        session = sign_in(relay, who)
        exchanged, cookie = team_pass(relay, name, session)
        assert exchanged.header("location") == "/headers"
        assert cookie is not None
        seen = received(
            relay.get("/headers", name=name, headers=[*BROWSER, ("Cookie", f"a=1; {cookie}")])
        )
        assert_clean(seen)
        assert seen["cookie"] == ["a=1"]
        elsewhere = relay.get("/headers", name=other_tunnel, headers=[("Cookie", cookie)])
        assert elsewhere.status == 401, who
        sign_out(relay, session)
        after = relay.get("/headers", name=name, headers=[("Cookie", cookie)])
        assert after.status == 401, who  # signing out ends the pass at once on this relay
    refused, cookie = team_pass(relay, name, sign_in(relay, "other"))
    assert refused.status == 403 and cookie is None
    assert "open only to its owner" in refused.text


def test_a_ticket_replayed_or_taken_to_another_tunnel_is_refused(
    relay, tokens, local_app, our_launcher
):
    name = ours(our_launcher, relay, local_app, tokens["owner"], "--private")
    other_tunnel = ours(our_launcher, relay, local_app, tokens["owner"], "--private")
    session = sign_in(relay, "mate")
    query = urlencode({"tunnel": name, "next": "/"})
    visit = relay.get(f"{protocol.TEAM_SIGNIN_PATH}?{query}", headers=[("Cookie", session)])
    back = urlsplit(visit.header("location") or "")
    target = f"{back.path}?{back.query}"
    assert relay.get(target, name=other_tunnel, headers=BROWSER).status == 403
    assert relay.get(target, name=name, headers=BROWSER).status == 303
    assert relay.get(target, name=name, headers=BROWSER).status == 403


def test_a_pass_taken_for_a_free_name_is_nothing_on_the_next_holders_tunnel(
    relay, tokens, local_app, our_launcher
):
    """Another user registers a name with --private, takes a pass for it as its owner and
    stops; when the owner registers that name, the pass does not open the owner's tunnel."""
    name = unique_name("taken")
    squatter = our_launcher(
        relay, local_app.port, "--private", "--subdomain", name, "--token", tokens["other"]
    )
    _, cookie = team_pass(relay, name, sign_in(relay, "other"))
    assert cookie is not None
    assert relay.get("/headers", name=name, headers=[("Cookie", cookie)]).status == 200
    squatter.process.stop()
    wait_until(lambda: relay.sockets(name) is None, 30, f"{name} to be free")
    ours(our_launcher, relay, local_app, tokens["owner"], "--private", "--subdomain", name)
    assert relay.get("/headers", name=name, headers=[("Cookie", cookie)]).status == 401
    assert relay.get("/headers", name=name, headers=[bearer(tokens["owner"])]).status == 200


# --- policy wins over clients, and reaches the npm client --------------------------------
def test_a_team_plan_makes_our_lt_team_only_without_private(relay, tokens, local_app, our_launcher):
    name = ours(our_launcher, relay, local_app, tokens["teamplan"])
    assert relay.get("/headers", name=name).status == 401
    assert relay.get("/headers", name=name, headers=[bearer(tokens["other"])]).status == 401
    assert_clean(received(relay.get("/headers", name=name, headers=[bearer(tokens["teamplan"])])))


def test_a_team_plan_applies_to_the_npm_client(relay, tokens, local_app, npm_group):
    name = npm(npm_group, relay, local_app, tokens["teamplan"])
    assert relay.get("/headers", name=name).status == 401
    assert_clean(received(relay.get("/headers", name=name, headers=[bearer(tokens["teamplan"])])))


def test_required_auth_on_a_plan_makes_an_npm_tunnel_team_only(relay, tokens, local_app, npm_group):
    name = npm(npm_group, relay, local_app, tokens["required"])
    assert relay.get("/headers", name=name).status == 401
    assert relay.get("/headers", name=name, headers=[bearer(tokens["other"])]).status == 401
    assert relay.get("/headers", name=name, headers=[bearer(tokens["required"])]).status == 200


def test_a_reserved_names_policy_applies_to_the_npm_client(relay, tokens, local_app, npm_group):
    name = npm(npm_group, relay, local_app, tokens["reserver"], "only-loopback-one")
    assert name == "only-loopback-one"
    assert relay.get("/headers", name=name).status == 200
    assert relay.get("/headers", name=name, source="127.0.0.2").status == 403


# --- behind a trusted proxy ----------------------------------------------------------------
def test_a_trusted_proxys_forwarded_address_is_judged_an_untrusted_one_ignored(
    relay_factory, local_app, our_launcher
):
    proxied = relay_factory(RELAY_TRUSTED_PROXIES="127.0.0.1/32", **NO_LIVE_TUNNEL_CAP)
    name = ours(our_launcher, proxied, local_app, None, "--cidr-allow", "198.51.100.0/24")
    forwarded = [("X-Forwarded-For", "198.51.100.7")]
    assert proxied.get("/headers", name=name, headers=forwarded).status == 200
    assert proxied.get("/headers", name=name, headers=forwarded, source="127.0.0.3").status == 403
    assert proxied.get("/headers", name=name).status == 403  # the proxy itself is not inside


# --- the warning page ----------------------------------------------------------------------
def test_an_anonymous_npm_tunnel_warns_a_browser_and_nothing_else(
    relay, local_app, module_lt_factory
):
    name = module_lt_factory(relay, local_app.port).name
    page = relay.get("/headers", name=name, headers=BROWSER)
    assert page.status == 200 and "an anonymous user" in page.text
    assert f'action="{protocol.CONTINUE_PATH}?next=%2Fheaders"' in page.text
    for method, headers in (
        ("GET", []),
        ("GET", [("User-Agent", "curl/8.5.0"), ("Accept", "*/*")]),
        ("GET", [*BROWSER, (protocol.BYPASS_WARNING_HEADER.decode(), "1")]),
        ("POST", BROWSER),
        ("OPTIONS", [*BROWSER, ("Access-Control-Request-Method", "PUT")]),
    ):
        answer = relay.request(method, "/headers", name=name, headers=headers, body=b"")
        assert "an anonymous user" not in answer.text, (method, headers)
    assert upgrade_status(relay, name, BROWSER[:1]) == 101


def test_a_token_tunnel_shows_no_warning_by_default(relay, tokens, local_app, our_launcher):
    name = ours(our_launcher, relay, local_app, tokens["other"])
    assert received(relay.get("/headers", name=name, headers=BROWSER)) is not None


# --- IPv6 and a second IPv4 visitor ------------------------------------------------------
@pytest.fixture(scope="module")
def dual_stack(module_relay_factory) -> Relay:
    """A relay bound to :: (IPv4 visitors arrive too), so a visitor can come from ::1."""
    return module_relay_factory("--bind", "::", **NO_LIVE_TUNNEL_CAP)


def test_ipv6_cidr_allow_and_deny_judge_a_visitor_from_ipv6_loopback(
    dual_stack, local_app, our_launcher
):
    allowed = ours(our_launcher, dual_stack, local_app, None, "--cidr-allow", "::1/128")
    assert dual_stack.get("/headers", name=allowed, source="::1").status == 200
    assert dual_stack.get("/headers", name=allowed, source="127.0.0.2").status == 403
    denied = ours(our_launcher, dual_stack, local_app, None, "--cidr-deny", "::/0")
    refused = dual_stack.get(
        "/headers", name=denied, source="::1", headers=[("Accept", "application/json")]
    )
    assert refused.status == 403
    assert "(::1)" in refused.json()["message"]
    # An IPv4 visitor of a dual-stack relay is judged as IPv4, not as ::ffff:127.0.0.2.
    assert dual_stack.get("/headers", name=denied, source="127.0.0.2").status == 200
