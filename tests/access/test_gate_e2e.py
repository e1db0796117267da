"""The visitor gate on a real relay process with our lt's real flags (--basic-auth,
--cidr-allow, --cidr-deny, --private), the npm client's anonymous tunnel (warned on the
default RELAY_INTERSTITIAL=anonymous) and the local app: per rule, what an anonymous visitor,
a visitor with the right credentials and one with the wrong ones get, and what reaches the app
(`/headers` echoes what the app received). Per kind of user (owner, teammate, other) see
tests/e2e/test_visitor_access.py."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from harness.relay import NO_LIVE_TUNNEL_CAP, issue_token, manage
from harness.visitor_access import BROWSER, basic, upgrade_status

from relay import visitor_pass
from relay.protocol import CONTINUE_PATH, TICKET_PATH

FLAGS = {
    "basic": ["--basic-auth", "ann:s3cret", "--basic-auth", "bob:pa:ss wörd"],
    "cidr": ["--cidr-allow", "127.0.0.0/24", "--cidr-allow", "2001:db8::/32"],
    "deny": ["--cidr-deny", "127.0.0.9/32"],
    "team": ["--private"],  # with the owner's token: an anonymous tunnel cannot be team-only
    "other": ["--private"],
}


@pytest.fixture(scope="module")
def relay(module_relay_factory):
    return module_relay_factory(**NO_LIVE_TUNNEL_CAP)


@pytest.fixture(scope="module")
def tunnels(relay, local_app, module_lt_factory, our_launcher):
    token = issue_token(relay, "gate-owner", "laptop")
    names = {
        kind: our_launcher(relay, local_app.port, *flags, "--token", token).name
        for kind, flags in FLAGS.items()
    }
    names["warn"] = module_lt_factory(relay, local_app.port).name  # anonymous: warned
    return names


@pytest.fixture(scope="module")
def owner_id(relay, tunnels) -> int:
    """The user id of the team-only tunnels' owner (a ticket is bound to it)."""
    code = "from django.contrib.auth.models import User\n"
    code += "print(User.objects.get(username='gate-owner').pk)"
    return int(manage(relay, "shell", "-c", code).split()[-1])


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
    relay_factory, local_app, our_launcher
):
    proxied = relay_factory(RELAY_TRUSTED_PROXIES="127.0.0.1/32")
    name = our_launcher(proxied, local_app.port, "--cidr-allow", "2001:db8::/32").name
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


def test_a_ticket_becomes_a_cookie_once_and_the_cookie_never_reaches_the_app(
    relay, tunnels, owner_id
):
    name = tunnels["team"]
    ticket = visitor_pass.issue_ticket(name, owner_id, owner_user_id=owner_id)
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


def test_a_ticket_or_cookie_for_one_tunnel_is_refused_on_another(relay, tunnels, owner_id):
    team, other = tunnels["team"], tunnels["other"]
    assert (
        exchange(
            relay, other, visitor_pass.issue_ticket(team, owner_id, owner_user_id=owner_id)
        ).status
        == 403
    )
    cookie = exchange(
        relay, team, visitor_pass.issue_ticket(team, owner_id, owner_user_id=owner_id)
    ).header("set-cookie")
    value = cookie.split(";")[0]
    assert relay.get("/headers", name=other, headers=[("Cookie", value)]).status == 401


def test_a_forged_expired_or_garbage_ticket_is_refused(relay, tunnels, owner_id):
    name = tunnels["team"]
    expired = visitor_pass.sign(visitor_pass.TICKET, name, owner_id, -1, owner_user_id=owner_id)
    access_kind = visitor_pass.sign(visitor_pass.ACCESS, name, owner_id, 60, owner_user_id=owner_id)
    good = visitor_pass.issue_ticket(name, owner_id, owner_user_id=owner_id)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for bad in (expired, access_kind, tampered, "x" * 5000, "%00%ff", ""):
        assert exchange(relay, name, bad).status == 403, bad[:20]


def test_next_after_a_ticket_stays_on_the_tunnel_host(relay, tunnels, owner_id):
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
            visitor_pass.issue_ticket(name, owner_id, owner_user_id=owner_id),
            quote(target, safe=""),
        )
        assert answer.status == 303
        assert answer.header("location") == location, target


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
