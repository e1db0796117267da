"""Responses reach only the visitor who asked, whatever the local app sends.

Visitor -> real relay (default settings) -> a tunnel client -> `tests/apps/hostile_app.py`,
an app that breaks HTTP framing on purpose. Our `lt` keeps one connection to the app per
pool socket; the relay keeps its pool sockets. Either one reused after an answer that did
not end where HTTP framing says would hand the rest (a response the app made for someone
else) to the next visitor. Each visitor asks for `/<its tag>/<mode>` and must get the answer
tagged with its own tag, or a 502: never another visitor's, never the app's `poison`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from harness.processes import PYTHON, ROOT, ProcessGroup
from harness.relay import LtLauncher, Relay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.procs import client_env

HOSTILE_APP = ROOT / "tests" / "apps" / "hostile_app.py"
SMUGGLED = b"GET /mallory/ok HTTP/1.1\r\nHost: x\r\n\r\n"

# (method, target, body) of a first visitor whose answer breaks framing one way or another.
TRIGGERS = {
    "extra-bytes-after-content-length": ("GET", "/alice/extra", None),
    "a-body-after-head": ("HEAD", "/alice/body", None),
    "a-body-after-204": ("GET", "/alice/body?status=204", None),
    "a-body-after-304": ("GET", "/alice/body?status=304", None),
    "a-storm-of-100-continue": ("GET", "/alice/continues?n=1000", None),
    "a-101-to-a-plain-get-then-bytes": ("GET", "/alice/switch", None),
    "an-early-answer-to-a-post-whose-body-is-a-request": ("POST", "/alice/early", SMUGGLED),
    "an-early-answer-to-a-big-post-of-requests": ("POST", "/alice/early", SMUGGLED * 8000),
}


@pytest.fixture(scope="module")
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def framing_relay(module_relay_factory) -> Relay:
    return module_relay_factory()  # the defaults: nothing here is about a setting


@pytest.fixture(scope="module")
def hostile_port(processes: ProcessGroup) -> int:
    process = processes.start([PYTHON, str(HOSTILE_APP)], {**client_env()}, name="hostile app")
    return int(process.wait_for_line(r"hostile app listening on http://127\.0\.0\.1:(\d+)")[1])


def start_our_lt(processes: ProcessGroup, relay: Relay, app_port: int, tmp: str) -> str:
    env = client_env()
    env.update(LT_CONFIG_DIR=tmp, PYTHONUNBUFFERED="1")
    args = [PYTHON, "-m", "client.cli", "--port", str(app_port)]
    process = processes.start(
        [*args, "--host", f"http://localhost:{relay.port}"], env, name="our lt"
    )
    url = process.wait_for_line(r"your url is: (\S+)")[1]
    name = re.match(r"https?://([^.]+)\.", url)[1]  # type: ignore[index]
    relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
    return name


@pytest.fixture(scope="module")
def our_tunnel(processes, framing_relay, hostile_port, tmp_path_factory) -> str:
    tmp = str(tmp_path_factory.mktemp("lt-config"))
    return start_our_lt(processes, framing_relay, hostile_port, tmp)


@pytest.fixture(scope="module")
def npm_tunnel(framing_relay, hostile_port, module_lt_factory: LtLauncher) -> str:
    return module_lt_factory(framing_relay, hostile_port).name


def visit(relay: Relay, name: str, method: str, target: str, body: bytes | None = None):
    """One visitor on a connection of its own: (status, the tag of the answer it got)."""
    answer = relay.request(method, target, name=name, body=body)
    return answer.status, answer.header("x-tag")


def assert_own_or_502(outcome: tuple[int, str | None], tag: str) -> None:
    status, got = outcome
    assert status == 502 or (status in (200, 204, 304) and got == tag), (outcome, tag)


def visit_when_connected(relay: Relay, name: str, method: str, target: str, body: bytes | None):
    """`visit` once the client has reopened the pool sockets the relay closed: a burst of
    closes can leave a loaded machine's client briefly without any (a 503, not a mix-up)."""
    relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
    return visit(relay, name, method, target, body)


def assert_the_next_visitors_get_their_own_pages(relay: Relay, name: str) -> None:
    # bob, then carol, ...: an answer left over from alice's exchange would shift every
    # later answer by one (bob gets alice's page, carol gets bob's).
    for tag in ("bob", "carol", "dave", "erin"):
        assert visit(relay, name, "GET", f"/{tag}/ok") == (200, tag)


@pytest.mark.parametrize("trigger", list(TRIGGERS.values()), ids=list(TRIGGERS))
def test_our_lt_never_gives_the_next_visitor_what_the_app_sent_beyond_an_answer(
    framing_relay: Relay, our_tunnel: str, trigger
):
    method, target, body = trigger

    assert_own_or_502(visit(framing_relay, our_tunnel, method, target, body), "alice")

    assert_the_next_visitors_get_their_own_pages(framing_relay, our_tunnel)


@pytest.mark.parametrize("trigger", list(TRIGGERS.values()), ids=list(TRIGGERS))
def test_the_relay_closes_the_npm_clients_socket_after_any_answer_that_overruns(
    framing_relay: Relay, npm_tunnel: str, trigger
):
    method, target, body = trigger

    assert_own_or_502(visit(framing_relay, npm_tunnel, method, target, body), "alice")

    assert_the_next_visitors_get_their_own_pages(framing_relay, npm_tunnel)


def test_a_few_interim_answers_still_reach_the_visitor_with_the_real_one(
    framing_relay: Relay, our_tunnel: str
):
    assert visit(framing_relay, our_tunnel, "GET", "/frank/continues?n=3") == (200, "frank")


def test_an_app_that_closes_after_each_answer_serves_every_visitor(
    framing_relay: Relay, our_tunnel: str
):
    for tag in ("gina", "hugo", "ines"):
        assert visit(framing_relay, our_tunnel, "GET", f"/{tag}/close") == (200, tag)


# What a visitor may ask of the hostile app: each mode with what it needs to misbehave.
VISITS = st.sampled_from(
    [
        ("GET", "ok", "", None),
        ("GET", "ok", "", None),
        ("GET", "extra", "", None),
        ("HEAD", "body", "", None),
        ("GET", "body", "?status=204", None),
        ("GET", "body", "?status=304", None),
        ("GET", "continues", "?n=2", None),
        ("GET", "continues", "?n=50", None),
        ("POST", "early", "", SMUGGLED),
        ("POST", "early", "", SMUGGLED * 3 + b"x" * 100),
        ("POST", "ok", "", b"plain body"),
        ("GET", "close", "", None),
        ("GET", "switch", "", None),
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(visits=st.lists(VISITS, min_size=2, max_size=8))
def test_any_mix_of_hostile_answers_gives_every_visitor_its_own_answer_or_a_502(
    framing_relay: Relay, our_tunnel: str, visits
):
    for index, (method, mode, query, body) in enumerate(visits):
        tag = f"v{index}"
        target = f"/{tag}/{mode}{query}"
        outcome = visit_when_connected(framing_relay, our_tunnel, method, target, body)
        assert_own_or_502(outcome, tag)
    assert visit(framing_relay, our_tunnel, "GET", "/last/ok") == (200, "last")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(visits=st.lists(VISITS, min_size=2, max_size=8))
def test_the_same_mix_through_the_npm_client_gives_every_visitor_its_own_answer_or_a_502(
    framing_relay: Relay, npm_tunnel: str, visits
):
    for index, (method, mode, query, body) in enumerate(visits):
        tag = f"n{index}"
        target = f"/{tag}/{mode}{query}"
        outcome = visit_when_connected(framing_relay, npm_tunnel, method, target, body)
        assert_own_or_502(outcome, tag)
    assert visit(framing_relay, npm_tunnel, "GET", "/last/ok") == (200, "last")


@pytest.mark.parametrize("mode", ["extra", "switch", "body?status=204", "continues?n=50"])
@pytest.mark.parametrize("client", ["ours", "npm"])
def test_a_websocket_upgrade_answered_with_extra_bytes_leaves_nothing_for_the_next_visitor(
    framing_relay: Relay, our_tunnel: str, npm_tunnel: str, client: str, mode: str
):
    name = our_tunnel if client == "ours" else npm_tunnel
    host = framing_relay.host(name)
    upgrade = (
        f"GET /alice/{mode} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with framing_relay.visitor(name) as visitor:
        visitor.send(upgrade.encode())
        refused = visitor.response()

    # The app did not accept: the handshake is refused, never passed on as accepted. A bad
    # 101 (h2c, bytes after it) is refused by wsproto (403); an answer that is not a 101 is
    # a 502 saying the app refused the WebSocket (relay/ws_proxy.py).
    if mode == "switch":
        assert refused.status == 403, refused
    else:
        assert refused.status == 502, refused
        assert "refused the WebSocket" in refused.json()["message"]
    assert_the_next_visitors_get_their_own_pages(framing_relay, name)


def _pool_ports(pid: int, relay: Relay) -> set[int]:
    """The local ports of the process's connections other than to the relay's public port:
    its pool sockets (and, for our lt, nothing else stays open to the relay)."""
    shown = subprocess.run(
        ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, timeout=10
    ).stdout
    ports = set()
    for line in shown.splitlines():
        if f"pid={pid}," not in line:
            continue
        local, peer = line.split()[2:4]
        if peer.endswith(f":{relay.port}") or not peer.startswith("127.0.0.1:"):
            continue
        ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def test_posts_keep_our_lts_pool_sockets_and_close_the_npm_clients(
    processes, framing_relay: Relay, hostile_port: int, module_lt_factory, tmp_path
):
    """The relay drops a raw-pipe (npm) pool socket after a request with a body, since the
    app may still answer the body later; our lt frames each exchange itself, so its pool
    sockets stay (a reconnect per POST would cost a round trip on a real link)."""
    name = start_our_lt(processes, framing_relay, hostile_port, str(tmp_path))
    ours = next(p for p in processes.children if p.name == "our lt" and p.proc.poll() is None)
    npm = module_lt_factory(framing_relay, hostile_port)
    for tunnel, pid, kept in ((name, ours.proc.pid, True), (npm.name, npm.process.proc.pid, False)):
        before = _pool_ports(pid, framing_relay)
        assert len(before) >= 10, before  # the app's port and the pool's: 10 pool sockets
        for index in range(3):
            answer = visit(framing_relay, tunnel, "POST", f"/p{index}/ok", b"x" * 100)
            assert answer == (200, f"p{index}")
        framing_relay.wait_for_sockets(tunnel, 10)
        after = _pool_ports(pid, framing_relay)
        assert (after == before) is kept, (tunnel, sorted(before), sorted(after))
