"""RELAY_LOG_FORMAT=json, RELAY_ACCESS_LOG=true and RELAY_LOG_LEVEL=DEBUG on a real relay,
with our lt, visitors and the admin doing what leaves secrets around, then every byte the
relay and the clients printed searched for those secrets (docs/logs.md).

One relay for the module runs the scenarios once (`scenario`); each test reads what it
printed. The scenarios: registrations with a token and with a wrong one, lt --basic-auth with
visitors giving the right and a wrong password (and a secret in a query string), a team-only
tunnel's sign-in, ticket and access cookie, a pool upgrade with the right and a bad secret,
refused registrations, the operator's Disconnect from the admin's dashboard, and a fault (the
counters' flush failing on a locked database)."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from harness import log_capture
from harness.fake_client import UpgradingTunnelClient
from harness.our_client import OurLtLauncher
from harness.relay import Relay, manage
from harness.tap import RegistrationTap
from harness.visitor_access import (
    BROWSER,
    PASSWORD,
    basic,
    sign_in,
    team_pass,
    upgrade_status,
)
from harness.waiting import IO_TIMEOUT_S, wait_until

from relay.protocol import CLIENT_ID_HEADER, POOL_SECRET_HEADER

LOGGING = {"RELAY_LOG_FORMAT": "json", "RELAY_ACCESS_LOG": "true", "RELAY_LOG_LEVEL": "DEBUG"}
REQUIRED = ("time", "level", "logger", "message")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# What runrelay prints on stdout for people, in either format (relay/run/runner.py).
BANNER = re.compile(
    r"^(tunnelsite relay listening on |tunnels are served at |pool ports: |TCP tunnels: |metrics: |"
    r"stopping|stopped)"
)

SETUP = f"""
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from tunnels.models import ApiToken
User = get_user_model()
team = Group.objects.create(name="team")
tokens = {{}}
for username in ("owner", "mate"):
    user = User.objects.create_user(username, password={PASSWORD!r})
    user.groups.add(team)
    tokens[username] = ApiToken.issue(user, name="logs")[1]
User.objects.create_superuser("operator", "op@example.com", {PASSWORD!r})
print(json.dumps(tokens))
"""


@dataclass
class Scenario:
    relay: Relay
    db: Path
    basic_name: str = ""
    private_name: str = ""
    upgraded_name: str = ""
    # (tunnel, method, path, status) of each visitor request made to the basic-auth tunnel
    expected_access: list[tuple[str, str, str, int]] = field(default_factory=list)
    pool_secrets: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [line for line in self.relay.process.output().splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines() if line.startswith("{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record.get("event") == name]


def new_secret(what: str) -> str:
    value = secrets.token_urlsafe(24)
    log_capture.remember(value, what)
    return value


@pytest.fixture(scope="module")
def scenario(module_relay_factory, local_app, our_launcher: OurLtLauncher, request) -> Scenario:
    relay = module_relay_factory(**LOGGING)
    db = Path(relay.env["DATABASE_URL"].removeprefix("sqlite:///"))
    done = Scenario(relay, db)
    tokens = json.loads(manage(relay, "shell", "-c", SETUP).strip().splitlines()[-1])
    for token in tokens.values():
        log_capture.remember(token, "a token of the logs scenario")

    # Our lt with a token and --basic-auth; visitors with no, a wrong and the right password.
    password = new_secret("the basic-auth password of ann")
    pair = f"ann:{password}"
    log_capture.remember_basic("ann", password)
    lt = our_launcher(relay, local_app.port, "--token", tokens["owner"], "--basic-auth", pair)
    done.basic_name = name = lt.name
    query_secret = new_secret("a secret in a visitor's query string")
    for headers, status in (([], 401), ([basic(f"ann:{new_secret('a wrong password')}")], 401)):
        assert relay.get("/headers", name=name, headers=headers).status == status
        done.expected_access.append((name, "GET", "/headers", status))
    answer = relay.get(f"/headers?token={query_secret}", name=name, headers=[basic(pair)])
    assert answer.status == 200
    done.expected_access.append((name, "GET", "/headers", 200))
    body = b"x" * 1000
    posted = relay.request("POST", "/sha256", name=name, headers=[basic(pair)], body=body)
    assert posted.status == 200
    done.expected_access.append((name, "POST", "/sha256", 200))
    assert upgrade_status(relay, name, [basic(pair)]) == 101
    done.expected_access.append((name, "GET", "/ws", 101))

    # Our lt registering through a tap that reads the relay's answers: the pool secret a real
    # relay gives a real lt joins the secrets searched for. Then a registration of its name
    # carries that secret without the token (refused, and logged as a refusal), and a
    # visitor sends it in a header: neither may show it.
    tap = RegistrationTap(relay.port)
    request.addfinalizer(tap.close)
    tapped = our_launcher(
        relay, local_app.port, "--token", tokens["owner"], "--host", f"http://localhost:{tap.port}"
    )
    wait_until(lambda: tap.seen, IO_TIMEOUT_S, "the tap to see a pool secret")
    done.pool_secrets = list(tap.seen)
    carried = [(POOL_SECRET_HEADER, done.pool_secrets[0]), (CLIENT_ID_HEADER, "c" * 32)]
    reclaim = relay.get(f"/{tapped.name}", headers=carried)
    assert reclaim.status in (401, 403, 409), reclaim
    assert relay.get("/headers", name=tapped.name, headers=carried).status == 200

    # A wrong token: lt is refused and says so.
    wrong = "lt_" + "abcd1234" + secrets.token_urlsafe(24)
    log_capture.remember(wrong, "a wrong token given to lt")
    refused = our_launcher.start(relay, local_app.port, "--token", wrong)
    assert refused.wait(IO_TIMEOUT_S) != 0

    # A team-only tunnel: the teammate signs in, gets a ticket and an access cookie.
    done.private_name = our_launcher(
        relay, local_app.port, "--token", tokens["owner"], "--private"
    ).name
    session = sign_in(relay, "mate")
    exchanged, cookie = team_pass(relay, done.private_name, session)
    assert cookie is not None, exchanged
    seen = relay.get("/headers", name=done.private_name, headers=[*BROWSER, ("Cookie", cookie)])
    assert seen.status == 200

    # Pool upgrades: this registration's secret, then a bad one.
    fake = UpgradingTunnelClient(relay)
    try:
        done.upgraded_name = fake.name
        fake.open()
        bad = new_secret("a bad pool secret")
        assert fake.upgrade(fake.upgrade_head(secret=bad)).status != 101
    finally:
        fake.close()

    # Refused registrations: a bad name, and an unknown token.
    assert relay.register("Not_A_Name").status == 403
    unknown = "lt_" + "zzzz9999" + secrets.token_urlsafe(24)
    log_capture.remember(unknown, "an unknown token in a registration")
    assert relay.get("/?new", headers=[("Authorization", f"Bearer {unknown}")]).status == 401

    # The operator's Disconnect of the basic-auth tunnel, from the admin's dashboard.
    operator = sign_in(relay, "operator")
    csrf = next(part.split("=", 1)[1] for part in operator.split("; ") if part.startswith("csrf"))
    posted = relay.request(
        "POST",
        "/admin/dashboard/disconnect",
        headers=[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", operator),
            ("Referer", f"http://127.0.0.1:{relay.port}/admin/dashboard/"),
        ],
        body=urlencode({"name": name, "csrfmiddlewaretoken": csrf}).encode(),
    )
    assert posted.status == 302, posted
    wait_until(lambda: done.events("operator_action"), IO_TIMEOUT_S, "the Disconnect's line")
    wait_until(
        lambda: any(e["tunnel"] == name for e in done.events("tunnel_closed")),
        IO_TIMEOUT_S,
        "the disconnected tunnel to close",
    )

    # A fault: the counters' flush meets a locked database (it retries afterwards).
    assert relay.get("/hello", name=done.private_name, headers=[("Cookie", cookie)]).status == 200
    lock = sqlite3.connect(db, isolation_level=None, timeout=IO_TIMEOUT_S)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        wait_until(lambda: done.events("fault"), 60, "a fault's line")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    done.outputs = [p for p in log_capture.checked_files() if p.stat().st_size]
    return done


# --- the JSON lines -----------------------------------------------------------------------------
def test_every_line_is_one_json_object_with_the_required_keys(scenario: Scenario) -> None:
    lines = scenario.lines()
    records = scenario.records()
    assert len(records) > 15
    for line in lines:
        if not line.startswith("{"):
            assert BANNER.match(line), f"neither JSON nor the start banner: {line!r}"
    for record in records:
        for key in REQUIRED:
            assert key in record, record
        assert ISO_UTC.match(record["time"]), record
        assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def test_tunnels_opened_and_closed_are_events_with_their_fields(scenario: Scenario) -> None:
    opened = {e["tunnel"]: e for e in scenario.events("tunnel_opened")}
    basic_open = opened[scenario.basic_name]
    assert basic_open["owner"] != "anonymous" and isinstance(basic_open["owner"], int)
    assert basic_open["kind"] == "http" and basic_open["client_ip"] == "127.0.0.1"
    assert basic_open["message"].startswith(f"tunnel {scenario.basic_name} opened for ")
    closed = [e for e in scenario.events("tunnel_closed") if e["tunnel"] == scenario.basic_name]
    assert closed and closed[0]["reason"] == "disconnected by the operator", closed
    assert closed[0]["requests"] >= 3


def test_refused_registrations_say_why(scenario: Scenario) -> None:
    refused = scenario.events("registration_refused")
    statuses = {e["status"] for e in refused}
    assert {401, 403} <= statuses, refused
    for event in refused:
        assert event["level"] == "INFO" and event["client_ip"] == "127.0.0.1"
        assert event["reason"] and event["message"].startswith("registration refused")


def test_the_operators_disconnect_is_an_event(scenario: Scenario) -> None:
    (action,) = scenario.events("operator_action")
    assert action["action"] == "disconnect"
    assert action["tunnels"] == [scenario.basic_name] and action["delivered"] is True
    assert action["by"].startswith("operator (user "), action  # the admin who acted


def test_a_fault_carries_its_traceback_as_one_string(scenario: Scenario) -> None:
    fault = scenario.events("fault")[0]
    assert fault["level"] == "ERROR"
    assert fault["exc"].startswith("Traceback (most recent call last):")
    # The lock itself, or a call that waited for the database thread the lock held (an
    # OperationalError too: relay/database.py).
    assert ("OperationalError: database is locked" in fault["exc"]) or (
        "QueueTimeout: the database is busy" in fault["exc"]
    ), fault["exc"]


# --- the access log -----------------------------------------------------------------------------
def test_the_access_log_has_one_line_per_request_with_its_status(scenario: Scenario) -> None:
    access = [e for e in scenario.events("access") if e["tunnel"] == scenario.basic_name]
    seen = [(e["tunnel"], e["method"], e["path"], e["status"]) for e in access]
    assert seen == scenario.expected_access
    for event in access:
        assert event["logger"] == "relay.access" and event["level"] == "INFO"
        assert event["visitor"] == "127.0.0.1" and event["duration_ms"] >= 0
        assert "?" not in event["path"] and "token=" not in event["message"]
    posted = next(e for e in access if e["method"] == "POST")
    assert posted["bytes_in"] == 1000 and posted["bytes_out"] > 0
    assert next(e for e in access if e["path"] == "/ws")["kind"] == "websocket"


# --- no secret ------------------------------------------------------------------------------
def test_no_secret_in_any_byte_the_relay_and_the_clients_printed(scenario: Scenario) -> None:
    used = log_capture.secrets()
    assert len(used) >= 8  # tokens, passwords, a pool secret, a ticket, cookies...
    assert scenario.pool_secrets and set(scenario.pool_secrets) <= set(used)  # a real lt's
    files = scenario.outputs
    assert any("relay" in p.name for p in files) and any("our-lt" in p.name for p in files)
    relay_bytes = sum(p.stat().st_size for p in files if "relay" in p.name)
    assert relay_bytes > 5_000  # DEBUG and the access log: there was much to search
    found = log_capture.leaks(files, used)
    assert not found, "\n".join(str(leak) for leak in found)


def test_the_search_finds_a_secret_in_each_form_it_knows(tmp_path: Path) -> None:
    """The search itself, on a file that does leak: raw, URL-encoded, JSON-escaped, base64."""
    secret = "s3cr3t/with+odd=chars é"
    for form in sorted(log_capture.forms(secret)):
        leaked = tmp_path / "00001-relay-1.log"
        leaked.write_bytes(b"before " + form.encode() + b" after\n")
        assert log_capture.leaks([leaked], {secret: "a test secret"}), form
    clean = tmp_path / "00002-relay-2.log"
    clean.write_text("s3cr3t is not the whole secret\n")
    assert not log_capture.leaks([clean], {secret: "a test secret"})
