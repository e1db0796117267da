"""The visitor gate on a real relay process with the real npm client and local app: per rule,
what an anonymous visitor, a visitor with the right credentials and one with the wrong ones
get, and what reaches the app (`/headers` echoes what the app received).

The rules come from tests/apps/access_asgi.py (by tunnel name) until our lt's rules header is
read at registration; everything on the byte path is the relay's own."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from harness.access_relay import (
    BROWSER,
    access_relay,
    relay_shell,
    staff_user,
    upgrade_status,
)
from harness.fake_client import FakeTunnelClient
from harness.relay import NO_LIVE_TUNNEL_CAP
from harness.waiting import unique_name, wait_until

from relay import visitor_pass
from relay.protocol import CONTINUE_PATH, TICKET_PATH

NAMES = {kind: unique_name(kind) for kind in ("basic", "cidr", "deny", "team", "other", "warn")}
RULES = {
    NAMES["basic"]: {"basic_auth": ["ann:s3cret", "bob:pa:ss wörd"]},
    NAMES["cidr"]: {"cidr_allow": [["127.0.0.0/24", "2001:db8::/32"]]},
    NAMES["deny"]: {"cidr_deny": ["127.0.0.9/32"]},
    NAMES["team"]: {"team": True},
    NAMES["other"]: {"team": True},
    NAMES["warn"]: {"warning": True},
}


def basic(pair: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())


@pytest.fixture(scope="module")
def relay(module_relay_factory):
    return access_relay(module_relay_factory, RULES, **NO_LIVE_TUNNEL_CAP)


@pytest.fixture(scope="module")
def tunnels(relay, local_app, module_lt_factory):
    return {
        kind: module_lt_factory(relay, local_app.port, name).name for kind, name in NAMES.items()
    }


def echoed(answer) -> dict[str, list[str]]:
    """The headers the local app received, by name."""
    assert answer.status == 200, answer
    received: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        received.setdefault(name, []).append(value)
    return received


# --- basic auth ----------------------------------------------------------------------------
def test_basic_auth_refuses_without_or_with_wrong_credentials(relay, tunnels):
    name = tunnels["basic"]
    for headers in (
        [],
        [basic("ann:wrong")],
        [basic("eve:s3cret")],
        [("Authorization", "Basic !!")],
    ):
        answer = relay.get("/headers", name=name, headers=headers)
        assert answer.status == 401, headers
        assert answer.header("www-authenticate") == f'Basic realm="{name}", charset="UTF-8"'
        assert "user name and password" in answer.text


def test_basic_auth_admits_each_user_and_the_app_never_sees_the_password(relay, tunnels):
    for pair in ("ann:s3cret", "bob:pa:ss wörd"):
        received = echoed(relay.get("/headers", name=tunnels["basic"], headers=[basic(pair)]))
        assert "authorization" not in received


def test_basic_auth_refusal_is_json_for_a_script(relay, tunnels):
    answer = relay.get("/", name=tunnels["basic"], headers=[("Accept", "application/json")])
    assert answer.status == 401
    assert "basic auth" in answer.json()["message"]


def test_a_websocket_upgrade_is_gated_by_basic_auth(relay, tunnels):
    assert upgrade_status(relay, tunnels["basic"]) == 401
    assert upgrade_status(relay, tunnels["basic"], [basic("ann:s3cret")]) == 101


# --- CIDR ----------------------------------------------------------------------------------
def test_cidr_allow_admits_addresses_inside_and_refuses_the_rest(relay, tunnels):
    inside = relay.get("/hello", name=tunnels["cidr"], source="127.0.0.7")
    outside = relay.get(
        "/hello", name=tunnels["cidr"], source="127.1.9.9", headers=[("Accept", "application/json")]
    )
    assert inside.status == 200
    assert outside.status == 403
    assert "does not allow visitors from your address (127.1.9.9)" in outside.json()["message"]
    assert upgrade_status(relay, tunnels["cidr"]) == 101  # 127.0.0.1 is inside


def test_cidr_deny_refuses_that_address_only(relay, tunnels):
    assert relay.get("/hello", name=tunnels["deny"], source="127.0.0.9").status == 403
    assert relay.get("/hello", name=tunnels["deny"], source="127.0.0.10").status == 200


def test_cidr_rules_take_the_real_address_behind_a_trusted_proxy_ipv6_too(
    relay_factory, local_app, lt_factory
):
    name = unique_name("v6")
    proxied = access_relay(
        relay_factory,
        {name: {"cidr_allow": [["2001:db8::/32"]]}},
        RELAY_TRUSTED_PROXIES="127.0.0.1/32",
    )
    lt_factory(proxied, local_app.port, name)
    for forwarded, status in (
        ("2001:db8::5", 200),
        ("2001:db9::5", 403),
        ("198.51.100.7", 403),
        ("::ffff:198.51.100.7", 403),
    ):
        answer = proxied.get("/hello", name=name, headers=[("X-Forwarded-For", forwarded)])
        assert answer.status == status, forwarded
    # Not through the trusted proxy: the header names nobody, the peer is the visitor.
    spoofed = proxied.get(
        "/hello", name=name, headers=[("X-Forwarded-For", "2001:db8::5")], source="127.0.0.3"
    )
    assert spoofed.status == 403


# --- team-only -----------------------------------------------------------------------------
def test_a_browser_is_sent_to_sign_in_and_a_script_is_told_how(relay, tunnels):
    name = tunnels["team"]
    browser = relay.get("/headers?x=1", name=name, headers=BROWSER)
    script = relay.get("/headers", name=name)
    assert browser.status == 302
    assert browser.header("location") == (
        f"http://localhost:{relay.port}/visit/?tunnel={name}&next=%2Fheaders%3Fx%3D1"
    )
    assert script.status == 401
    assert script.header("www-authenticate") == f'Bearer realm="{name}"'
    assert "Authorization: Bearer" in script.text
    assert upgrade_status(relay, name) == 401


def exchange(relay, name: str, ticket: str, next_path: str = "/headers"):
    return relay.get(f"{TICKET_PATH}?ticket={ticket}&next={next_path}", name=name, headers=BROWSER)


@pytest.fixture(scope="module")
def staff(relay) -> int:
    return staff_user(relay, unique_name("staff"))


def test_a_ticket_becomes_a_cookie_once_and_the_cookie_never_reaches_the_app(relay, tunnels, staff):
    name = tunnels["team"]
    ticket = visitor_pass.issue_ticket(name, staff, owner_user_id=None)
    first = exchange(relay, name, ticket)
    assert first.status == 303
    assert first.header("location") == "/headers"
    cookie = first.header("set-cookie")
    assert cookie.startswith("tunnelsite_access=")
    attributes = cookie.split("; ")[1:]
    assert sorted(attributes) == sorted(["Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax"])
    assert not any(a.lower().startswith("domain") for a in attributes)  # host-only

    replay = exchange(relay, name, ticket)
    assert replay.status == 403
    assert "sign in again" in replay.text

    value = cookie.split(";")[0]
    received = echoed(relay.get("/headers", name=name, headers=[("Cookie", f"a=1; {value}; b=2")]))
    assert received["cookie"] == ["a=1; b=2"]
    alone = echoed(relay.get("/headers", name=name, headers=[("Cookie", value)]))
    assert "cookie" not in alone
    assert upgrade_status(relay, name, [("Cookie", value)]) == 101


def test_a_ticket_or_cookie_for_one_tunnel_is_refused_on_another(relay, tunnels):
    team, other = tunnels["team"], tunnels["other"]
    assert (
        exchange(relay, other, visitor_pass.issue_ticket(team, 7, owner_user_id=None)).status == 403
    )
    cookie = exchange(relay, team, visitor_pass.issue_ticket(team, 7, owner_user_id=None)).header(
        "set-cookie"
    )
    value = cookie.split(";")[0]
    assert relay.get("/headers", name=other, headers=[("Cookie", value)]).status == 401


def test_a_forged_expired_or_garbage_ticket_is_refused(relay, tunnels):
    name = tunnels["team"]
    expired = visitor_pass.sign(visitor_pass.TICKET, name, 7, -1)
    access_kind = visitor_pass.sign(visitor_pass.ACCESS, name, 7, 60)
    good = visitor_pass.issue_ticket(name, 7, owner_user_id=None)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for bad in (expired, access_kind, tampered, "x" * 5000, "%00%ff", ""):
        assert exchange(relay, name, bad).status == 403, bad[:20]


def test_next_after_a_ticket_stays_on_the_tunnel_host(relay, tunnels):
    name = tunnels["team"]
    for target, location in (
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\tx", "/"),
        ("/ok?a=1", "/ok?a=1"),
    ):
        answer = exchange(
            relay,
            name,
            visitor_pass.issue_ticket(name, 7, owner_user_id=None),
            quote(target, safe=""),
        )
        assert answer.status == 303
        assert answer.header("location") == location, target


TEAM_SHELL = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from tunnels.models import ApiToken
User = get_user_model()
team = Group.objects.create(name='team')
users = [User.objects.create_user(n) for n in ('owner', 'mate', 'other')]
for user in users[:2]:
    user.groups.add(team)
for user in users:
    print(ApiToken.issue(user, name='t')[1])
"""


def test_bearer_tokens_of_the_owner_and_a_teammate_pass_others_do_not(relay_factory):
    name = unique_name("teamtok")
    own = access_relay(relay_factory, {name: {"team": True}})
    owner, mate, other = relay_shell(own, TEAM_SHELL)[-3:]
    client = FakeTunnelClient(own, name, headers=[("Authorization", f"Bearer {owner}")])
    try:
        client.connect(1)
        _visit_with_tokens(own, name, client, owner, mate, other)
    finally:
        client.close()


def _visit_with_tokens(own, name, client, owner, mate, other) -> None:
    for token in (owner, mate):
        with own.visitor(name) as visitor:
            visitor.send(
                f"GET /x HTTP/1.1\r\nHost: {own.host(name)}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            pool, request = client.next_request()
            assert "authorization" not in request.header_names()
            pool.respond(200, b"in")
            assert visitor.response().body == b"in"
    for headers in ([("Authorization", f"Bearer {other}")], [("Authorization", "Bearer nope")], []):
        assert own.get("/x", name=name, headers=headers).status == 401, headers


# --- the warning page ----------------------------------------------------------------------
def test_the_warning_page_is_shown_to_a_browsers_first_navigation(relay, tunnels):
    name = tunnels["warn"]
    page = relay.get("/headers?q=<b>", name=name, headers=BROWSER)
    assert page.status == 200
    assert page.header("cache-control") == "no-store"
    assert "an anonymous user" in page.text
    assert "not</strong> a site of the operator" in page.text
    assert f'action="{CONTINUE_PATH}?next=%2Fheaders%3Fq%3D%3Cb%3E"' in page.text
    assert "<b>" not in page.text.split("<body>")[1]  # the visitor's URL is escaped
    assert f"http://localhost:{relay.port}/report/?tunnel={name}" in page.text


@pytest.mark.parametrize(
    "method,headers",
    [
        ("GET", []),  # curl
        ("GET", [*BROWSER, ("bypass-tunnel-reminder", "1")]),
        ("GET", [h for h in BROWSER if h[0] != "Sec-Fetch-Mode"]),  # fetch(), an image
        ("GET", [*BROWSER[:1], ("Accept", "application/json"), *BROWSER[2:]]),
        ("POST", BROWSER),
        ("OPTIONS", [*BROWSER, ("Access-Control-Request-Method", "PUT")]),
    ],
)
def test_the_warning_page_is_never_shown_to_anything_else(relay, tunnels, method, headers):
    answer = relay.request(method, "/headers", name=tunnels["warn"], headers=headers)
    if method == "GET":
        assert answer.json()["method"] == method  # the app's echo
    else:
        assert answer.body == b"method not allowed\n"  # the app's answer to other methods


def test_a_websocket_never_gets_the_warning_page(relay, tunnels):
    assert upgrade_status(relay, tunnels["warn"], BROWSER[:1]) == 101


def test_continue_sets_a_cookie_for_this_tunnel_only_and_the_app_never_sees_it(relay, tunnels):
    name = tunnels["warn"]
    answer = relay.request(
        "POST",
        CONTINUE_PATH,
        name=name,
        headers=[
            *BROWSER[:2],
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body=b"next=%2Fheaders",
    )
    assert answer.status == 303
    assert answer.header("location") == "/headers"
    cookie = answer.header("set-cookie")
    assert cookie.startswith("tunnelsite_warned=") and "HttpOnly" in cookie
    value = cookie.split(";")[0]
    after = relay.get("/headers", name=name, headers=[*BROWSER, ("Cookie", f"{value}; z=9")])
    assert echoed(after)["cookie"] == ["z=9"]
    # The same cookie on another warning tunnel's host is nothing.
    elsewhere = relay.get("/headers", name=tunnels["team"], headers=[("Cookie", value)])
    assert elsewhere.status == 401


def test_continue_from_another_site_is_refused(relay, tunnels):
    answer = relay.request(
        "POST",
        CONTINUE_PATH + "?next=/",
        name=tunnels["warn"],
        headers=[*BROWSER[:2], ("Sec-Fetch-Site", "cross-site")],
        body=b"",
    )
    assert answer.status == 403


# --- one name, two owners ------------------------------------------------------------------
TWO_OWNERS_SHELL = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from tunnels.models import ApiToken
User = get_user_model()
team = Group.objects.create(name='a-team')
a, mate, b = (User.objects.create_user(n) for n in ('owner-a', 'mate-of-a', 'owner-b'))
a.groups.add(team)
mate.groups.add(team)
print(a.pk, mate.pk, b.pk)
print(ApiToken.issue(a, name='t')[1])
print(ApiToken.issue(b, name='t')[1])
"""


def test_a_teammates_pass_into_one_owners_tunnel_does_not_open_the_next_owners(relay_factory):
    name = unique_name("twoowners")
    # A short grace, so the name is free for the next owner soon after A's client goes.
    own = access_relay(relay_factory, {name: {"team": True}}, RELAY_GRACE_S="0.5")
    ids, token_a, token_b = relay_shell(own, TWO_OWNERS_SHELL)[-3:]
    owner_a, mate, _owner_b = (int(n) for n in ids.split())
    first = visitor_pass.issue_ticket(name, mate, owner_user_id=owner_a)
    unspent = visitor_pass.issue_ticket(name, mate, owner_user_id=owner_a)
    client_a = FakeTunnelClient(own, name, headers=[("Authorization", f"Bearer {token_a}")])
    try:
        client_a.connect(1)
        cookie = exchange(own, name, first).header("set-cookie").split(";")[0]
        with own.visitor(name) as visitor:
            visitor.send(
                f"GET / HTTP/1.1\r\nHost: {own.host(name)}\r\nCookie: {cookie}\r\n\r\n".encode()
            )
            pool, _ = client_a.next_request()
            pool.respond(200, b"a's app")
            assert visitor.response().body == b"a's app"
    finally:
        client_a.close()

    def registered_by_b():
        answer = own.get(f"/{name}", headers=[("Authorization", f"Bearer {token_b}")])
        return answer if answer.status == 200 else None

    wait_until(registered_by_b, 15, f"owner B registering {name}")
    with_cookie = own.get("/", name=name, headers=[("Cookie", cookie)])
    assert with_cookie.status == 401
    replayed = exchange(own, name, unspent)
    assert replayed.status == 403 and "earlier owner" in replayed.text
