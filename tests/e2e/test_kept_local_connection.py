"""Responses reach only the visitor who asked, whatever the local app sends.

Visitor -> real relay (default settings) -> a tunnel client -> `tests/apps/hostile_app.py`,
an app that breaks HTTP framing on purpose. Our `lt` keeps one connection to the app per
pool socket; the relay keeps its pool sockets. Either one reused after an answer that did
not end where HTTP framing says would hand the rest (a response the app made for someone
else) to the next visitor. Each visitor asks for `/<its tag>/<mode>` and must get the answer
tagged with its own tag, or a 502: never another visitor's, never the app's `poison`.

The DELAYED variants (`?late=`) write the poison in a write of its own, a few ms later or
only once the next request has arrived: no check at the end of an answer can see it. Such
answers are never reused (HEAD, 204, 304, 1xx, trailers), and the first time an app is
caught sending bytes past an answer, its tunnel stops reusing connections for good (our lt
says so; the relay logs it for a raw-pipe client such as npm's). What remains: a late
second answer to a plain 200 that arrives after the next request was written is that
request's answer to everyone (nginx and Go have the same limit); at most one visitor per
kept connection gets it before the tunnel stops reusing, and none with
`--no-local-keepalive`.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.processes import PYTHON, ROOT, Process, ProcessGroup
from harness.relay import NO_LIVE_TUNNEL_CAP, LtLauncher, Relay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.procs import client_env

HOSTILE_APP = ROOT / "tests" / "apps" / "hostile_app.py"
SMUGGLED = b"GET /mallory/ok HTTP/1.1\r\nHost: x\r\n\r\n"
# What our lt prints, once, when it catches its app sending bytes past an answer.
DISTRUST_LINE = "your app sent bytes after a response; keep-alive to it is now off"

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
def framing_relay(module_relay_factory) -> Relay:
    # Every test starts clients of its own (a client that caught its app sending bytes past
    # an answer never reuses a connection again, which would hide the next test's bug), all
    # from 127.0.0.1: the per-address caps would refuse them. Nothing else is changed.
    return module_relay_factory(**NO_LIVE_TUNNEL_CAP)


@pytest.fixture(scope="module")
def hostile_app(module_group: ProcessGroup) -> Process:
    return module_group.start([PYTHON, str(HOSTILE_APP)], {**client_env()}, name="hostile app")


@pytest.fixture(scope="module")
def hostile_port(hostile_app: Process) -> int:
    match = hostile_app.wait_for_line(r"hostile app listening on http://127\.0\.0\.1:(\d+)")
    return int(match[1])


def start_our_lt_process(
    module_group: ProcessGroup,
    relay: Relay,
    app_port: int,
    tmp: str,
    *extra: str,
    env_extra: dict[str, str] | None = None,
) -> tuple[str, Process]:
    env = client_env(**(env_extra or {}))
    env.update(LT_CONFIG_DIR=tmp, PYTHONUNBUFFERED="1")
    args = [PYTHON, "-m", "tunnelsite_client.cli", "--port", str(app_port), *extra]
    process = module_group.start(
        [*args, "--host", f"http://localhost:{relay.port}"], env, name="our lt"
    )
    url = process.wait_for_line(r"your url is: (\S+)")[1]
    name = re.match(r"https?://([^.]+)\.", url)[1]  # type: ignore[index]
    relay.wait_for_sockets(name, int(relay.env.get("RELAY_MAX_SOCKETS", "10")))
    return name, process


def start_our_lt(module_group: ProcessGroup, relay: Relay, app_port: int, tmp: str) -> str:
    return start_our_lt_process(module_group, relay, app_port, tmp)[0]


@pytest.fixture
def our_lt(module_group, framing_relay, hostile_port, tmp_path) -> Iterator[tuple[str, Process]]:
    name, process = start_our_lt_process(module_group, framing_relay, hostile_port, str(tmp_path))
    try:
        yield name, process
    finally:
        process.stop()


@pytest.fixture
def our_tunnel(our_lt: tuple[str, Process]) -> str:
    return our_lt[0]


@pytest.fixture
def npm_tunnel(framing_relay, hostile_port, module_lt_factory: LtLauncher) -> Iterator[str]:
    client = module_lt_factory(framing_relay, hostile_port)
    try:
        yield client.name
    finally:
        client.stop()


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
        ("GET", "trailer", "", None),
        # Delayed: the poison in a write of its own, after MS ms (the next visitor comes
        # once it is sent) or only once the next request has arrived.
        ("GET", "extra", "?late=3", None),
        ("HEAD", "body", "?late=2", None),
        ("HEAD", "body", "?late=next", None),
        ("GET", "body", "?status=204&late=next", None),
        ("GET", "body", "?status=304&late=1", None),
        ("GET", "continues", "?n=2&late=next", None),
        ("GET", "trailer", "?late=next", None),
        ("GET", "trailer", "?late=4", None),
    ]
)


def visit_and_wait_out_the_gap(
    relay: Relay, app: Process, name: str, visit_: tuple, reporter: tuple[Process, str]
) -> None:
    """One hypothesis visit, asserted; for `late=MS`, the next visitor comes only after
    the app has sent its late poison (the app says so) and, after an answer that was kept
    (`extra`), once the poison has reached whoever watches the idle connection (our lt, or
    the relay for the npm client) and it has said so: the app's write alone does not mean
    the bytes arrived (loopback delivery may lag on a loaded machine; the npm client
    forwards them in its own time)."""
    method, mode, query, body, tag = visit_
    outcome = visit_when_connected(relay, name, method, f"/{tag}/{mode}{query}", body)
    assert_own_or_502(outcome, tag)
    if re.search(r"late=\d", query):
        app.wait_for_line(rf"poison sent after {tag}$")
        if mode == "extra":
            reporter[0].wait_for_line(reporter[1])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(visits=st.lists(VISITS, min_size=2, max_size=8))
def test_any_mix_of_hostile_answers_gives_every_visitor_its_own_answer_or_a_502(
    framing_relay: Relay, hostile_app: Process, our_lt: tuple[str, Process], visits
):
    our_tunnel, process = our_lt
    run = uuid.uuid4().hex[:8]
    for index, (method, mode, query, body) in enumerate(visits):
        tag = f"v{run}-{index}"
        visit_and_wait_out_the_gap(
            framing_relay,
            hostile_app,
            our_tunnel,
            (method, mode, query, body, tag),
            (process, re.escape(DISTRUST_LINE)),
        )
    assert visit(framing_relay, our_tunnel, "GET", "/last/ok") == (200, "last")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(visits=st.lists(VISITS, min_size=2, max_size=8))
def test_the_same_mix_through_the_npm_client_gives_every_visitor_its_own_answer_or_a_502(
    framing_relay: Relay, hostile_app: Process, npm_tunnel: str, visits
):
    run = uuid.uuid4().hex[:8]
    for index, (method, mode, query, body) in enumerate(visits):
        tag = f"n{run}-{index}"
        visit_and_wait_out_the_gap(
            framing_relay,
            hostile_app,
            npm_tunnel,
            (method, mode, query, body, tag),
            (framing_relay.process, rf"WARNING.*tunnel {npm_tunnel}: its local app sent bytes"),
        )
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
    # a 502 saying the app refused the WebSocket (relay/proxy/websocket.py).
    if mode == "switch":
        assert refused.status == 403, refused
    else:
        assert refused.status == 502, refused
        assert "refused the WebSocket" in refused.json()["message"]
    assert_the_next_visitors_get_their_own_pages(framing_relay, name)


def _pool_ports(pid: int, app_port: int) -> set[int]:
    """The local ports of the process's loopback connections other than to the app: its pool
    connections (our lt's to the relay's public port, upgraded; the npm client's to the
    tunnel's raw pool port), as nothing else stays open to the relay."""
    shown = subprocess.run(
        ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, timeout=10
    ).stdout
    ports = set()
    for line in shown.splitlines():
        if f"pid={pid}," not in line:
            continue
        local, peer = line.split()[2:4]
        if peer.endswith(f":{app_port}") or not peer.startswith("127.0.0.1:"):
            continue
        ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def test_posts_keep_our_lts_pool_sockets_and_close_the_npm_clients(
    module_group, framing_relay: Relay, hostile_port: int, module_lt_factory, tmp_path
):
    """The relay drops a raw-pipe (npm) pool socket after a request with a body, since the
    app may still answer the body later; our lt frames each exchange itself, so its pool
    sockets stay (a reconnect per POST would cost a round trip on a real link)."""
    name = start_our_lt(module_group, framing_relay, hostile_port, str(tmp_path))
    ours = next(p for p in module_group.children if p.name == "our lt" and p.proc.poll() is None)
    npm = module_lt_factory(framing_relay, hostile_port)
    for tunnel, pid, kept in ((name, ours.proc.pid, True), (npm.name, npm.process.proc.pid, False)):
        before = _pool_ports(pid, hostile_port)
        assert len(before) >= 10, before  # the app's port and the pool's: 10 pool sockets
        for index in range(3):
            answer = visit(framing_relay, tunnel, "POST", f"/p{index}/ok", b"x" * 100)
            assert answer == (200, f"p{index}")
        framing_relay.wait_for_sockets(tunnel, 10)
        after = _pool_ports(pid, hostile_port)
        assert (after == before) is kept, (tunnel, sorted(before), sorted(after))


# --- delayed extra bytes ---------------------------------------------------------------------

# Answers where buggy apps write a body anyway, the body (a whole response) written only once
# the next request has arrived on the connection: no check can see it in time, so neither
# client's connection is ever reused after one.
LATE_AMBIGUOUS = {
    "a-late-body-after-head": ("HEAD", "/alice/body?late=next"),
    "a-late-body-after-204": ("GET", "/alice/body?status=204&late=next"),
    "a-late-body-after-304": ("GET", "/alice/body?status=304&late=next"),
    "a-late-response-after-1xx": ("GET", "/alice/continues?n=2&late=next"),
    "a-late-response-after-trailers": ("GET", "/alice/trailer?late=next"),
}


@pytest.fixture(params=["ours", "npm"])
def client_tunnel(
    request, module_group, framing_relay: Relay, hostile_port: int, module_lt_factory, tmp_path
) -> Iterator[tuple[str, Process, str]]:
    """A fresh tunnel through either client: (name, the process that reports the sticky
    distrust, the pattern of that report)."""
    if request.param == "ours":
        name, process = start_our_lt_process(
            module_group, framing_relay, hostile_port, str(tmp_path)
        )
        try:
            yield name, process, re.escape(DISTRUST_LINE)
        finally:
            process.stop()
    else:
        client = module_lt_factory(framing_relay, hostile_port)
        pattern = rf"WARNING.*tunnel {client.name}: its local app sent bytes after a response"
        try:
            yield client.name, framing_relay.process, pattern
        finally:
            client.stop()


def own_or_502(outcome: tuple[int, str | None], tag: str) -> bool:
    status, got = outcome
    return status == 502 or (status in (200, 204, 304) and got == tag)


def visit_concurrently(relay: Relay, name: str, targets: list[str]) -> list[tuple[str, tuple]]:
    """One visitor per target (`/<tag>/...`), all at once: (tag, outcome) for each."""

    def one(target: str) -> tuple[str, tuple]:
        method = "HEAD" if target.startswith("HEAD ") else "GET"
        path = target.removeprefix("HEAD ")
        return path.split("/")[1], visit(relay, name, method, path)

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(one, targets))


def mixed_up(outcomes: list[tuple[str, tuple]]) -> list[tuple[str, tuple]]:
    return [(tag, outcome) for tag, outcome in outcomes if not own_or_502(outcome, tag)]


@pytest.mark.parametrize("trigger", list(LATE_AMBIGUOUS.values()), ids=list(LATE_AMBIGUOUS))
def test_no_connection_is_reused_after_an_answer_where_apps_write_a_late_body(
    framing_relay: Relay, client_tunnel, trigger
):
    name = client_tunnel[0]
    method, target = trigger

    assert_own_or_502(visit(framing_relay, name, method, target), "alice")

    # Each comes after the last one's answer, before the late body: what a reused
    # connection would hand bob is the body alice's answer never had.
    assert_the_next_visitors_get_their_own_pages(framing_relay, name)


def test_once_an_app_sent_bytes_after_an_answer_its_tunnel_reuses_nothing_for_good(
    framing_relay: Relay, hostile_app: Process, client_tunnel
):
    name, reporter, reported = client_tunnel
    alice = f"alice{uuid.uuid4().hex[:8]}"

    assert visit(framing_relay, name, "GET", f"/{alice}/extra?late=5") == (200, alice)
    hostile_app.wait_for_line(rf"poison sent after {alice}$")  # 5 ms later
    # Whoever watches the idle connection (our lt; the relay for npm's raw pipe) sees the
    # poison arrive, closes the connection and says so, once.
    reporter.wait_for_line(reported)
    assert visit(framing_relay, name, "GET", "/bob/ok") == (200, "bob")
    # The worst case from now on: every answer followed by a second one that arrives only
    # once the next request is on its way. Nothing is reused, so nobody gets another's.
    targets = [f"/late{i}/extra?late=next" for i in range(50)]
    assert mixed_up(visit_concurrently(framing_relay, name, targets)) == []
    assert len(re.findall(reported, reporter.output())) == 1  # once, however many since


def test_concurrent_visitors_get_at_most_one_late_answer_per_socket_then_none(
    framing_relay: Relay, client_tunnel
):
    """The residual risk, bounded: an app that answers every request twice, the second
    time once the next request has arrived. The first reuse of a kept connection hands
    that request the late answer (nothing can tell it from the real one); the real one
    then comes past its end, and the tunnel stops reusing. So at most one visitor per pool
    socket (10) is mixed up, in practice a few, and none after that."""
    name, reporter, reported = client_tunnel
    sockets = int(framing_relay.env.get("RELAY_MAX_SOCKETS", "10"))

    first = visit_concurrently(framing_relay, name, [f"/a{i}/extra?late=next" for i in range(40)])

    assert len(mixed_up(first)) <= sockets, mixed_up(first)
    reporter.wait_for_line(reported)
    later = visit_concurrently(framing_relay, name, [f"/b{i}/extra?late=next" for i in range(50)])
    assert mixed_up(later) == []


ALL_LATE_VARIANTS = [
    "/{}/extra?late=next",
    "/{}/extra?late=2",
    "/{}/extra",
    "HEAD /{}/body?late=next",
    "/{}/body?status=204&late=next",
    "/{}/body?status=304",
    "/{}/continues?n=3&late=next",
    "/{}/trailer?late=next",
    "/{}/trailer",
]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_without_local_keepalive_no_visitor_ever_gets_another_ones_answer(
    module_group, framing_relay: Relay, hostile_port: int, tmp_path, how: str
):
    extra = ["--no-local-keepalive"] if how == "flag" else []
    env = {"LOCAL_KEEPALIVE": "false"} if how == "environment" else {}
    name, process = start_our_lt_process(
        module_group, framing_relay, hostile_port, str(tmp_path), *extra, env_extra=env
    )
    try:
        targets = [
            variant.format(f"{how}{round_}x{index}")
            for round_ in range(3)
            for index, variant in enumerate(ALL_LATE_VARIANTS)
        ]
        for _ in range(2):
            assert mixed_up(visit_concurrently(framing_relay, name, targets)) == []
        assert DISTRUST_LINE not in process.output()  # off from the start: nothing to say
    finally:
        process.stop()


def test_with_raw_pool_reuse_off_no_npm_visitor_ever_gets_another_ones_answer(
    module_relay_factory, hostile_port: int, module_lt_factory
):
    """The operator's switch for the npm client, which has no --no-local-keepalive:
    RELAY_RAW_POOL_REUSE=false gives each raw pool socket one exchange, so not even a late
    answer written after the next request arrived can reach another visitor."""
    relay = module_relay_factory(RELAY_RAW_POOL_REUSE="false", **NO_LIVE_TUNNEL_CAP)
    client = module_lt_factory(relay, hostile_port)
    try:
        # One visitor after another, each answered twice, the second time once the next
        # request arrived: with reuse the next visitor gets the late answer, every time.
        for index in range(5):
            relay.wait_for_sockets(client.name, 10)
            assert_own_or_502(
                visit(relay, client.name, "GET", f"/seq{index}/extra?late=next"), f"seq{index}"
            )
        targets = [
            variant.format(f"strict{round_}x{index}")
            for round_ in range(3)
            for index, variant in enumerate(ALL_LATE_VARIANTS)
        ]
        for _ in range(2):
            relay.wait_for_sockets(client.name, 10)
            assert mixed_up(visit_concurrently(relay, client.name, targets)) == []
        assert "its local app sent bytes after a response" not in relay.process.output()
    finally:
        client.stop()
