"""Accounts end to end: tokens, revocation, plans and reserved names, with both real clients.

Every process is real: relays started with `RELAY_ALLOW_ANONYMOUS=false`, the npm client
(`localtunnel@2.0.2`, token in the host URL's user part, which axios sends as HTTP Basic),
our `lt` (`python -m tunnelsite_client.cli --token`), and the local app. Users, plans, reserved
names and
tokens are written into each relay's own database with `manage.py shell -c`; the relay reads
them at registration. Revocation goes through `manage.py revoketoken` in a separate process,
which reaches the relay over Redis (a relay started with `REDIS_URL`).

Where both clients can do a thing, the test is parametrized over `ours` and `npm`. A refusal
reaches our `lt` as the real status (exit code 3/4/6) and the npm client as 203 + message,
which it prints before it exits instead of retrying forever.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from harness.http import Answer, Visitor
from harness.processes import PYTHON, Process, ProcessGroup
from harness.quota_clock import fresh_minute
from harness.redis_index import redis_index
from harness.relay import NPM_LT, Relay, manage
from harness.waiting import wait_until

from bench.procs import client_env

from .appdata import GREETING

CLIENTS = ["ours", "npm"]
EXIT_TIMEOUT_S = 20.0  # a refused client must be gone well before this
REVOKE_CLOSE_S = 2.0
RESERVED_BY_OPERATOR = "staff-only"
REDIS_BASE = os.environ.get("TUNNELSITE_TEST_REDIS", "redis://127.0.0.1:6379")
# Not the cluster tests' index (1 + pid % 15) in the same pytest process.
REDIS_INDEX = redis_index("accounts")  # harness/redis_index.py: one per worker and run
CONTROL_GROUP_KEY = "asgi:group:relay-control"

NOT_VALID = "That API token is not valid"
REVOKED = "That API token has been revoked"
IS_RESERVED = "is reserved"
ONE_TUNNEL = "You already have 1 live tunnel, the most your plan (one-tunnel) allows"

# Users, plans, reserved names and one token per (user, client), printed as JSON.
SETUP = """
import json
from django.contrib.auth import get_user_model
from tunnels.models import Account, ApiToken, Plan, ReservedSubdomain
User = get_user_model()
one = Plan.objects.create(name="one-tunnel", max_live_tunnels=1)
three = Plan.objects.create(name="three-per-minute", max_live_tunnels=0,
                            max_requests_per_minute=3)
plans = {"alice": None, "bob": None, "carol": one, "dave": three, "erin": None}
tokens = {}
for username, plan in plans.items():
    user = User.objects.create_user(username)
    if plan is not None:
        Account.objects.create(user=user, plan=plan)
    for client in ("ours", "npm"):
        tokens[f"{username}-{client}"] = ApiToken.issue(user, name=client)[1]
for client in ("ours", "npm"):  # requests per minute count per account: a user per client
    user = User.objects.create_user(f"dave-{client}")
    Account.objects.create(user=user, plan=three)
    tokens[f"dave-{client}"] = ApiToken.issue(user, name=client)[1]
bob = User.objects.get(username="bob")
for client in ("ours", "npm"):
    ReservedSubdomain.objects.create(name=f"bobs-name-{client}", user=bob)
print(json.dumps(tokens))
"""


# --- helpers ------------------------------------------------------------------------------------
def set_up_accounts(relay: Relay) -> dict[str, str]:
    tokens = json.loads(manage(relay, "shell", "-c", SETUP).strip().splitlines()[-1])
    assert all(token.startswith("lt_") for token in tokens.values())
    return tokens


def status_through(relay: Relay, name: str) -> int:
    """The status of GET /hello through the tunnel `name` (0: no answer at all)."""
    try:
        return relay.get("/hello", name=name).status
    except OSError:
        return 0


def register_with(relay: Relay, token: str, user_agent: str = "test/1") -> Answer:
    """A bare `GET /?new` registration carrying `token` as a Bearer token."""
    with Visitor(relay.port, f"localhost:{relay.port}") as visitor:
        return visitor.request(
            "GET",
            "/?new",
            [("Authorization", f"Bearer {token}"), ("User-Agent", user_agent)],
        )


@dataclass
class Running:
    process: Process
    name: str


class Clients:
    """Starts either client against a relay with a token; stopped when the test ends."""

    def __init__(self, group: ProcessGroup, config_dir: str) -> None:
        self.group = group
        self.config_dir = config_dir

    def start(
        self, kind: str, relay: Relay, app_port: int, token: str, subdomain: str | None = None
    ) -> Process:
        env = client_env()
        if kind == "ours":
            env.update(LT_CONFIG_DIR=self.config_dir, PYTHONUNBUFFERED="1")
            args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(app_port)]
            args += ["--host", f"http://localhost:{relay.port}", "--token", token]
        else:
            if not NPM_LT.exists():
                pytest.fail("the npm client is not installed; run `make test` once")
            args = [str(NPM_LT), "--port", str(app_port)]
            args += ["--host", f"http://{token}@localhost:{relay.port}"]
        if subdomain:
            args += ["--subdomain", subdomain]
        return self.group.start(args, env, name=f"{kind} lt")

    def open(
        self, kind: str, relay: Relay, app_port: int, token: str, subdomain: str | None = None
    ) -> Running:
        """Start a client, wait for its URL and all of its pool sockets."""
        process = self.start(kind, relay, app_port, token, subdomain)
        url = process.wait_for_line(r"your url is: (\S+)").group(1)
        name = re.match(r"https?://([^.]+)\.", url).group(1)  # type: ignore[union-attr]
        relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
        return Running(process, name)

    def refused(
        self,
        kind: str,
        relay: Relay,
        app_port: int,
        token: str,
        subdomain: str | None = None,
    ) -> tuple[int, str]:
        """Start a client that the relay should refuse; its exit code and output."""
        process = self.start(kind, relay, app_port, token, subdomain)
        try:
            code = process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the {kind} client kept running {EXIT_TIMEOUT_S:g} s after a refusal "
                f"(retrying silently?); output:\n{process.output()}"
            )
        process.stop()  # join the output reader: all lines are in
        return code, process.output()


def assert_refused(kind: str, code: int, output: str, our_code: int, message: str) -> None:
    if kind == "ours":
        assert code == our_code, output
        assert f"lt: the relay refused the tunnel: {message}" in output, output
    else:
        assert code != 0, output
        assert message in output, output
        assert "your url is" not in output, output


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def clients(tmp_path) -> Iterator[Clients]:
    group = ProcessGroup()
    try:
        yield Clients(group, str(tmp_path / "lt-config"))
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def accounts_relay(module_relay_factory) -> tuple[Relay, dict[str, str]]:
    """A relay that needs tokens, with two operator-reserved names; and the tokens."""
    relay = module_relay_factory(
        RELAY_ALLOW_ANONYMOUS="false",
        RELAY_RESERVED_NAMES=f"{RESERVED_BY_OPERATOR},mail-box",
    )
    return relay, set_up_accounts(relay)


@pytest.fixture(scope="module")
def redis_relay(module_relay_factory) -> Iterator[tuple[Relay, dict[str, str]]]:
    """A token relay on Redis, so `manage.py revoketoken` in another process reaches it."""
    url = f"{REDIS_BASE}/{REDIS_INDEX}"
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.flushdb()
        relay = module_relay_factory(RELAY_ALLOW_ANONYMOUS="false", REDIS_URL=url)
        # The relay listens for revocations once it has joined the control group.
        wait_until(lambda: client.zcard(CONTROL_GROUP_KEY) > 0, 10, "the relay on Redis")
        yield relay, set_up_accounts(relay)
    finally:
        client.flushdb()
        client.close()


def served(relay: Relay, name: str) -> None:
    answer = relay.get("/hello", name=name)
    assert (answer.status, answer.body) == (200, GREETING), answer


# --- 1. a bad token -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CLIENTS)
def test_a_bad_token_is_refused_with_the_relays_message(kind, accounts_relay, local_app, clients):
    relay, _ = accounts_relay
    bad = "bad" if kind == "ours" else "BADTOKEN"

    started = time.monotonic()
    code, output = clients.refused(kind, relay, local_app.port, bad)

    assert_refused(kind, code, output, 3, NOT_VALID)
    print(f"{kind}: refused and exited in {time.monotonic() - started:.2f} s")


def test_the_npm_client_sees_203_and_others_the_real_401(accounts_relay):
    relay, _ = accounts_relay

    npm = register_with(relay, "BADTOKEN", user_agent="axios/0.21.4")
    other = register_with(relay, "BADTOKEN")

    assert npm.status == 203
    assert npm.header("x-tunnelsite-status") == "401"
    assert NOT_VALID in npm.json()["message"]
    assert other.status == 401
    assert NOT_VALID in other.json()["message"]


# --- 2. a good token ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CLIENTS)
def test_a_good_token_opens_a_tunnel_that_serves(kind, accounts_relay, local_app, clients):
    relay, tokens = accounts_relay

    lt = clients.open(kind, relay, local_app.port, tokens[f"alice-{kind}"])

    served(relay, lt.name)


# --- 3. revoking a token while its tunnel is live -------------------------------------------------
@pytest.mark.parametrize("kind", CLIENTS)
def test_revoking_a_live_token_closes_its_tunnel_within_2_s(kind, redis_relay, local_app, clients):
    relay, tokens = redis_relay
    token = tokens[f"erin-{kind}"]
    lt = clients.open(kind, relay, local_app.port, token)
    served(relay, lt.name)

    asked = time.monotonic()
    out = manage(relay, "revoketoken", token[:11])  # the prefix, as the admin lists it
    sent = time.monotonic()  # the command has sent the close over Redis by now
    wait_until(
        lambda: status_through(relay, lt.name) in (404, 503),
        REVOKE_CLOSE_S + 5,
        f"the tunnel {lt.name} to close",
    )
    took = time.monotonic() - sent

    print(
        f"{kind}: the tunnel stopped serving {took:.3f} s after revoketoken returned "
        f"({time.monotonic() - asked:.2f} s after it was started)"
    )
    assert "Revoked" in out
    assert took < REVOKE_CLOSE_S
    assert status_through(relay, lt.name) in (404, 503)
    again = register_with(relay, token)
    assert again.status == 401
    assert REVOKED in again.json()["message"]
    if kind == "ours":  # it tries to register again, is refused, and says why
        assert lt.process.wait(EXIT_TIMEOUT_S) == 3
        lt.process.stop()
        assert REVOKED in lt.process.output()
    # A client started afresh with the revoked token is refused too, with the message.
    code, output = clients.refused(kind, relay, local_app.port, token)
    assert_refused(kind, code, output, 3, REVOKED)


# Unticking "active" in the admin saves the user so; the admin's form does exactly this.
DEACTIVATE = """
from django.contrib.auth import get_user_model
user = get_user_model().objects.get(username="{username}")
user.is_active = False
user.save()
"""
NEW_USER = """
from django.contrib.auth import get_user_model
from tunnels.models import ApiToken
user = get_user_model().objects.create_user("{username}")
print(ApiToken.issue(user, name="ours")[1])
"""


def test_deactivating_a_user_closes_their_live_tunnels_and_refuses_their_token(
    redis_relay, local_app, clients
):
    relay, _ = redis_relay
    token = manage(relay, "shell", "-c", NEW_USER.format(username="fay")).strip().splitlines()[-1]
    lt = clients.open("ours", relay, local_app.port, token)
    served(relay, lt.name)

    manage(relay, "shell", "-c", DEACTIVATE.format(username="fay"))  # another process: Redis
    sent = time.monotonic()
    wait_until(
        lambda: status_through(relay, lt.name) in (404, 503),
        REVOKE_CLOSE_S + 5,
        f"the deactivated user's tunnel {lt.name} to close",
    )
    assert time.monotonic() - sent < REVOKE_CLOSE_S
    # Closed by the deactivation's message, not later by the flush's sweep of tokens.
    closed = f"tunnel {lt.name} closed: the account was deactivated by the operator"
    wait_until(lambda: closed in relay.process.output(), 5, "the relay to log why")
    again = register_with(relay, token)
    assert again.status == 401
    assert "disabled" in again.json()["message"]
    assert lt.process.wait(EXIT_TIMEOUT_S) == 3  # it tried again, was refused, and stopped


# --- 4. quotas ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CLIENTS)
def test_a_second_tunnel_over_max_live_tunnels_is_refused_429(
    kind, accounts_relay, local_app, clients
):
    relay, tokens = accounts_relay
    token = tokens[f"carol-{kind}"]
    first = clients.open(kind, relay, local_app.port, token)

    code, output = clients.refused(kind, relay, local_app.port, token)

    assert_refused(kind, code, output, 6, ONE_TUNNEL)
    served(relay, first.name)  # the first one is untouched


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_4th_request_in_a_minute_gets_429_with_retry_after(
    kind, accounts_relay, local_app, clients
):
    relay, tokens = accounts_relay
    lt = clients.open(kind, relay, local_app.port, tokens[f"dave-{kind}"])
    fresh_minute(need_s=10)  # the four requests in one UTC minute

    answers = [relay.get("/hello", name=lt.name) for _ in range(4)]

    assert [a.status for a in answers[:3]] == [200, 200, 200]
    assert all(a.body == GREETING for a in answers[:3])
    assert answers[3].status == 429
    assert 1 <= int(answers[3].header("retry-after") or "0") <= 60
    assert b"has used its 3 requests for this minute" in answers[3].body


# --- 5. reserved names --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("whose", ["operator", "bob"])
def test_a_reserved_name_is_refused_403(whose, kind, accounts_relay, local_app, clients):
    relay, tokens = accounts_relay
    name = RESERVED_BY_OPERATOR if whose == "operator" else f"bobs-name-{kind}"

    code, output = clients.refused(kind, relay, local_app.port, tokens[f"alice-{kind}"], name)

    assert_refused(kind, code, output, 4, f"The subdomain {name!r} {IS_RESERVED}")
    assert relay.sockets(name) is None


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_user_a_name_is_reserved_for_gets_it(kind, accounts_relay, local_app, clients):
    relay, tokens = accounts_relay
    name = f"bobs-name-{kind}"

    lt = clients.open(kind, relay, local_app.port, tokens[f"bob-{kind}"], name)

    assert lt.name == name
    served(relay, name)
