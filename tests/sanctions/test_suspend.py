"""An operator's Suspend, end to end: a real relay on Redis, the npm client and our lt, and
the suspension made from another process as the admin makes it (tunnels/suspensions.py).
The live tunnel closes, registrations are refused with the reason (the npm client's 203 and
our lt's refusal), visitors and WebSockets of the name get 403 with the reason, and after
a Lift the name registers again."""

from __future__ import annotations

import json

import pytest
from harness.http import Visitor
from harness.relay import Relay, issue_token, manage
from harness.waiting import unique_name, wait_until
from harness.websocket import run_websocket
from websockets.exceptions import InvalidStatus

from relay.protocol import REFUSAL_HEADER, REFUSAL_SUSPENDED, SUSPENDED_STATUS

REASON = "phishing <b>reported</b> & confirmed"  # markup: the page must escape it
SUSPENDED = "is suspended by the relay's operator: " + REASON
NPM_AGENT = ("User-Agent", "axios/0.21.4")
EXIT_S = 20.0


def shell(relay: Relay, code: str) -> str:
    return manage(relay, "shell", "-c", "from tunnels import suspensions\n" + code)


def register(relay: Relay, name: str | None, token: str = "", npm: bool = False):  # noqa: ANN201
    headers = [NPM_AGENT] if npm else []
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    with Visitor(relay.port, f"localhost:{relay.port}") as visitor:
        return visitor.request("GET", f"/{name}" if name else "/?new", headers)


def assert_refused(relay: Relay, name: str | None, what: str, token: str = "") -> None:
    """Both clients' registrations are refused with the reason: ours sees 403 and the
    refusal header, the npm client 203 with the message it prints before it exits."""
    refused = register(relay, name, token)
    assert refused.status == SUSPENDED_STATUS, refused
    assert refused.header(REFUSAL_HEADER) == REFUSAL_SUSPENDED
    assert refused.json()["message"] == f"{what} {SUSPENDED}"
    npm = register(relay, name, token, npm=True)
    assert npm.status == 203 and npm.json()["message"] == f"{what} {SUSPENDED}", npm


def assert_visitors_see_the_reason(relay: Relay, name: str) -> None:
    page = relay.get("/hello", name=name)
    assert page.status == SUSPENDED_STATUS, page
    assert b"phishing &lt;b&gt;reported&lt;/b&gt; &amp; confirmed" in page.body
    assert b"<b>reported" not in page.body
    data = relay.get("/hello", name=name, headers=[("Accept", "application/json")])
    assert data.json() == {
        "message": f"This tunnel has been suspended by the relay's operator: {REASON}"
    }
    with pytest.raises(InvalidStatus) as refused:
        run_websocket(relay, name, lambda ws: ws.recv())
    assert refused.value.response.status_code == SUSPENDED_STATUS
    assert REASON in json.loads(refused.value.response.body)["message"]


@pytest.fixture
def relay(redis_relay_factory) -> Relay:
    return redis_relay_factory()


def test_a_suspended_name_closes_the_npm_tunnel_and_refuses_everyone_until_lifted(
    relay, local_app, lt_factory
):
    lt = lt_factory(relay, local_app.port, subdomain=unique_name("npm"))
    assert relay.get("/hello", name=lt.name).status == 200
    shell(relay, f"suspensions.suspend_names([{lt.name!r}], {REASON!r})")
    wait_until(lambda: relay.sockets(lt.name) is None, 5, "the tunnel to close")
    assert_visitors_see_the_reason(relay, lt.name)
    assert_refused(relay, lt.name, f"The tunnel name {lt.name}")
    lt.stop()
    # A new npm client for the name is refused and says why.
    process = lt_factory.start(relay, local_app.port, subdomain=lt.name)
    assert process.wait(EXIT_S) != 0
    assert SUSPENDED in process.output() and "your url is" not in process.output()

    shell(
        relay,
        "from tunnels.models import Suspension\n"
        f"suspensions.lift(Suspension.objects.filter(name={lt.name!r}))",
    )
    wait_until(lambda: register(relay, lt.name).status == 200, 5, "the name to register again")
    assert relay.get("/hello", name=lt.name).status != SUSPENDED_STATUS


def test_a_suspended_name_tells_our_lt_why_and_keeps_it_off(relay, local_app, our_launcher):
    name = unique_name("ours")
    lt = our_launcher(relay, local_app.port, "--subdomain", name)
    shell(relay, f"suspensions.suspend_names([{name!r}], {REASON!r})")
    wait_until(lambda: SUSPENDED in lt.process.output(), EXIT_S, "lt to print the reason")
    assert relay.sockets(name) is None
    assert_visitors_see_the_reason(relay, name)


@pytest.mark.parametrize("kind", ["token", "user"])
def test_a_suspended_token_or_user_closes_its_tunnel_and_is_refused(
    kind, relay, local_app, our_launcher
):
    user = unique_name("user")
    token = issue_token(relay, user, "laptop")
    name = unique_name(kind)
    lt = our_launcher(relay, local_app.port, "--subdomain", name, "--token", token)
    if kind == "token":
        shell(
            relay,
            "from tunnels.models import ApiToken\n"
            f"suspensions.suspend_tokens(ApiToken.objects.filter(user__username={user!r}), "
            f"{REASON!r})",
        )
        what = "That API token"
    else:
        shell(
            relay,
            "from django.contrib.auth import get_user_model\n"
            f"suspensions.suspend_users(get_user_model().objects.filter(username={user!r}), "
            f"{REASON!r})",
        )
        what = "Your account"
    wait_until(lambda: f"{what} {SUSPENDED}" in lt.process.output(), EXIT_S, "lt to say why")
    assert relay.sockets(name) is None
    assert_visitors_see_the_reason(relay, name)  # the name it had when suspended
    assert_refused(relay, None, what, token)  # any name, with that token
    anonymous = register(relay, unique_name("free"))
    assert anonymous.status == 200, "only that token or user is refused"

    shell(
        relay, "from tunnels.models import Suspension\nsuspensions.lift(Suspension.objects.all())"
    )
    wait_until(lambda: register(relay, name, token).status == 200, 5, "registering again")
