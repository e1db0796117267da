"""Registration limits on a real relay with their DEFAULT values (issue 10 items 8, 22, 23).

The harness turns the per-owner limits off for every other test (all test tunnels come from
127.0.0.1); these relays drop those overrides (`NAME=None`), so the defaults are what runs.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from harness.fake_client import FakeTunnelClient, fresh_loopback
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import RELAY_COMMAND, RELAY_TEST_ENV
from harness.waiting import IO_TIMEOUT_S, unique_name, wait_until

DEFAULTS = {"RELAY_DEFAULT_PLAN_MAX_LIVE_TUNNELS": None, "RELAY_REGISTRATIONS_PER_MINUTE": None}
DEFAULT_LIVE_LIMIT = 5
DEFAULT_BURST = 20


@pytest.fixture
def clients() -> Iterator[list[FakeTunnelClient]]:
    made: list[FakeTunnelClient] = []
    try:
        yield made
    finally:
        for client in made:
            client.close()


# --- item 8: a client that stopped does not hold a place under the live-tunnel limit -----------
def test_restarted_clients_are_not_refused_by_the_default_live_tunnel_limit(relay_factory, clients):
    relay = relay_factory(**DEFAULTS)
    owner = fresh_loopback()  # one anonymous owner: every client registers from one address
    first = [FakeTunnelClient(relay, source=owner) for _ in range(DEFAULT_LIVE_LIMIT)]
    clients += first
    for client in first:
        client.connect(1)
    for client in first:  # every client stops; their names wait out the grace period
        client.close()
    for client in first:
        relay.wait_for_sockets(client.name, 0)

    second = [FakeTunnelClient(relay, source=owner) for _ in range(DEFAULT_LIVE_LIMIT)]  # restart
    clients += second
    for client in second:
        client.connect(1)

    assert [relay.sockets(c.name) for c in second] == [1] * DEFAULT_LIVE_LIMIT
    assert [relay.sockets(c.name) for c in first] == [None] * DEFAULT_LIVE_LIMIT  # released
    refused = relay.register(source=owner)  # but connected tunnels still count
    assert refused.status == 429, refused
    assert "You already have 5 live tunnels" in refused.json()["message"]


# --- item 23: registrations per owner are rate-limited ------------------------------------------
def test_a_registration_loop_is_rate_limited_with_retry_after(relay_factory):
    relay = relay_factory(**DEFAULTS)
    answers = []
    for _ in range(DEFAULT_BURST + 5):
        answer = relay.register()
        answers.append(answer.status)
        if answer.status != 200:
            break
        deleted = relay.request("DELETE", f"/api/tunnels/{answer.json()['id']}")
        assert deleted.status == 204, deleted

    assert answers == [200] * DEFAULT_BURST + [429]
    assert answer.reason == "Too Many Requests", answer  # not Twisted's "Unknown Status"
    assert 1 <= int(answer.header("retry-after") or 0) <= 10, answer
    assert "Too many tunnel registrations" in answer.json()["message"]
    assert relay.register(source="127.0.0.2").status == 200  # per owner, not per relay


def test_refused_token_registrations_are_rate_limited_per_address(relay_factory):
    """Review L3: a wrong token cost a database lookup each and was never limited. Refusals
    spend the address's bucket (checked before the database); a correct client is not held
    back by someone else's failures, and never spends it."""
    relay = relay_factory(**DEFAULTS)
    prober, honest = fresh_loopback(), fresh_loopback()
    token = _token(relay)
    statuses, answer = [], None
    for n in range(DEFAULT_BURST + 5):
        wrong = {"Authorization": f"Bearer lt_{n:0>40}"}
        with relay.visitor(source=prober) as visitor:
            answer = visitor.request("GET", "/?new", list(wrong.items()))
        statuses.append(answer.status)
        if answer.status == 429:
            break

    assert statuses == [401] * DEFAULT_BURST + [429]
    assert 1 <= int(answer.header("retry-after") or 0) <= 10, answer
    assert "refused" in answer.json()["message"]
    for scheme in ("Basic Og==", "Foo bar", "Bearer "):  # unreadable ones count the same
        with relay.visitor(source=prober) as visitor:
            assert visitor.request("GET", "/?new", [("Authorization", scheme)]).status == 429
    for _ in range(DEFAULT_BURST + 1):  # the token's owner, registering many times over
        with relay.visitor(source=honest) as visitor:
            answer = visitor.request("GET", "/?new", [("Authorization", f"Bearer {token}")])
            if answer.status == 200:
                deleted = relay.request(
                    "DELETE",
                    f"/api/tunnels/{answer.json()['id']}",
                    headers=[("Authorization", f"Bearer {token}")],
                    source=honest,
                )
                assert deleted.status == 204, deleted
        if answer.status != 200:
            break
    # ...is limited only by its own per-owner bucket, never by refusals.
    assert answer.status == 429 and "Too many tunnel registrations" in answer.json()["message"]


def _token(relay) -> str:
    create = "from django.contrib.auth import get_user_model; "
    create += "get_user_model().objects.create_user('alice')"
    for args in (("shell", "-c", create), ("createtoken", "alice")):
        done = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=relay.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    return done.stdout.strip()


# --- item 22: a free pool port is found whenever one exists -------------------------------------
FIRST_PORT, LAST_PORT = 23100, 23599  # below the ephemeral range: only explicit binds take them
HOLDER = """
import signal, socket, sys
held = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); s.listen(1); held.append(s)
    except OSError:
        pass
print("holding", len(held), flush=True)
signal.pause()  # until the test stops it
"""


def test_the_last_free_ports_of_a_mostly_used_range_are_found(relay_factory, tmp_path):
    relay = relay_factory(RELAY_POOL_PORTS=f"{FIRST_PORT}-{LAST_PORT}")
    ports = list(range(FIRST_PORT, LAST_PORT + 1))
    free = {ports[137], ports[401]}
    taken = [port for port in ports if port not in free]
    group = ProcessGroup()
    held: list[socket.socket] = []
    try:
        # Half the range is held by another process, half by this one.
        other = group.start([PYTHON, "-c", HOLDER, *map(str, taken[::2])], name="port holder")
        other.wait_for_line(r"holding \d+")
        for port in taken[1::2]:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen(1)
                held.append(sock)
            except OSError:
                sock.close()  # someone else holds it: taken all the same

        got = [relay.register(unique_name("port")) for _ in range(len(free))]
        assert [a.status for a in got] == [200] * len(free), got
        assert {a.json()["port"] for a in got} == free

        full = relay.register(unique_name("port"))
        assert full.status == 503, full
        assert f"All {len(ports)} pool ports" in full.json()["message"]
        assert full.header("retry-after") is not None
    finally:
        for sock in held:
            sock.close()
        group.stop_all()


# --- item 26: IPv6 over real sockets (::1 is one address; tests/views covers whole /64s) ----------
def _v6_request(port: int, method: str, target: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("::1", port, timeout=IO_TIMEOUT_S)
    try:
        connection.request(method, target, headers={"Host": f"localhost:{port}"})
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, json.loads(body) if body else {}
    finally:
        connection.close()


def test_an_ipv6_client_registers_connects_and_is_counted_as_one_owner(relay_template_db, tmp_path):
    db = tmp_path / "v6.sqlite3"
    shutil.copyfile(relay_template_db, db)
    env = {**os.environ, **RELAY_TEST_ENV, "DATABASE_URL": f"sqlite:///{db}"}
    env.update(RELAY_BIND="::1", RELAY_POOL_BIND="::1", PYTHONUNBUFFERED="1")
    for name in DEFAULTS:
        env.pop(name, None)
    command = [*RELAY_COMMAND]
    command[command.index("127.0.0.1")] = "::1"
    group = ProcessGroup()
    pool: list[socket.socket] = []
    try:
        relay = group.start(command, env, name="relay on ::1")
        port = int(relay.wait_for_line(r"relay listening on http://\S+:(\d+)").group(1))
        names = []
        for _ in range(DEFAULT_LIVE_LIMIT):
            status, body = _v6_request(port, "GET", "/?new")
            assert status == 200, body
            names.append(body["id"])
            pool.append(socket.create_connection(("::1", body["port"]), timeout=IO_TIMEOUT_S))
        for name in names:
            wait_until(
                lambda name=name: (
                    _v6_request(port, "GET", f"/api/tunnels/{name}/status")[1]
                    == {"connected_sockets": 1}
                ),
                IO_TIMEOUT_S,
                f"{name}'s pool socket from ::1",
            )

        status, body = _v6_request(port, "GET", "/?new")
        assert status == 429, body  # ::1's /64 holds the default five
        assert _v6_request(port, "DELETE", f"/api/tunnels/{names[0]}")[0] == 204
        assert _v6_request(port, "GET", "/?new")[0] == 200
    finally:
        for sock in pool:
            sock.close()
        group.stop_all()
