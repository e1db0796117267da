"""/metrics attacked: wrong and missing tokens, a token in the URL, /metrics on a tunnel's
host, slow, huge and many requests to RELAY_METRICS_BIND's listener, a bind that cannot be
had, and the labels' cardinality with many tunnels (bounded unless RELAY_METRICS_PER_TUNNEL)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.fake_client import FakeTunnelClient
from harness.http import Visitor
from harness.prometheus import (
    TOKEN,
    bare,
    listener,
    listener_port,
    promtool_check,
    scrape,
    series,
    value,
)
from harness.relay import RELAY_COMMAND, LocalApp, LtLauncher, Relay, relay_env
from harness.waiting import IO_TIMEOUT_S, wait_until

from relay.protocol import (
    METRICS_FAILURE_WINDOW_S,
    METRICS_FAILURES_PER_ADDRESS,
    METRICS_HEAD_TIMEOUT_S,
    METRICS_MAX_CONNECTIONS,
    METRICS_MAX_HEAD_BYTES,
)

SLACK_S = 3.0  # how late a deadline may fire on a loaded machine
TUNNELS = 30  # "many" tunnels for the cardinality checks (each from its own address)


@pytest.fixture(scope="module")
def relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    """Both ways on (the token, a listener on a free port); the rest the defaults."""
    return module_relay_factory(RELAY_METRICS_TOKEN=TOKEN, RELAY_METRICS_BIND="127.0.0.1:0")


@pytest.fixture(scope="module")
def port(relay: Relay) -> int:
    return listener_port(relay)


# --- the bare domain ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-the-token",
        f"Bearer {TOKEN}x",  # longer
        f"Bearer {TOKEN[:-1]}",  # a prefix
        f"Basic {TOKEN}",  # another scheme
        "Bearer ",
    ],
)
def test_a_missing_or_wrong_token_gets_401_with_a_message(
    relay: Relay, authorization: str | None
) -> None:
    headers = [("Authorization", authorization)] if authorization is not None else []
    with Visitor(relay.port, f"localhost:{relay.port}") as visitor:
        answer = visitor.request("GET", "/metrics", headers)
    assert answer.status == 401
    assert (answer.header("www-authenticate") or "").startswith("Bearer")
    assert "Authorization: Bearer" in answer.json()["message"]
    assert b"tunnelsite_" not in answer.body


def test_a_token_in_the_query_string_is_never_read(relay: Relay) -> None:
    for query in (f"token={TOKEN}", f"access_token={TOKEN}", f"bearer={TOKEN}"):
        answer = bare(relay, token=None, target=f"/metrics?{query}")
        assert answer.status == 401, answer
        assert "never read" in answer.json()["message"]


def test_the_right_token_gets_the_metrics(relay: Relay) -> None:
    assert "tunnelsite_accepting" in scrape(relay)
    # Only GET and HEAD: another method gets a 405 with a message, not a CSRF page.
    with Visitor(relay.port, f"localhost:{relay.port}") as visitor:
        refused = visitor.request("POST", "/metrics", [("Authorization", f"Bearer {TOKEN}")])
    assert refused.status == 405 and "GET /metrics" in refused.json()["message"]


def test_without_a_token_the_bare_domain_says_how_to_turn_metrics_on(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory()  # the defaults: no token, no listener
    answer = bare(relay)
    assert answer.status == 404
    message = answer.json()["message"]
    assert "RELAY_METRICS_TOKEN" in message and "RELAY_METRICS_BIND" in message
    assert "metrics: off" in relay.process.output()


def test_an_address_that_keeps_guessing_is_held_back_logged_and_others_still_served(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)  # a relay of its own: this one is held
    assert bare(relay, token=None).status == 401
    guesses = [f"guess-{i:04d}-" + "g" * 40 for i in range(METRICS_FAILURES_PER_ADDRESS - 1)]
    for guess in guesses:
        assert bare(relay, token=guess).status == 401
    held = bare(relay)  # even the right token: it is not compared any more
    assert held.status == 429, held
    assert 0 < int(held.header("retry-after") or "0") <= METRICS_FAILURE_WINDOW_S
    assert "try again in" in held.json()["message"]
    with Visitor(relay.port, f"localhost:{relay.port}", source="127.0.0.2") as visitor:
        other = visitor.request("GET", "/metrics", [("Authorization", f"Bearer {TOKEN}")])
    assert other.status == 200 and b"tunnelsite_accepting" in other.body
    # Each refusal is logged, at most 10 lines per address a minute (rationed as refused
    # registrations are: 21 refusals here), and no guess appears in them.
    relay.process.wait_for_line(r"/metrics refused for 127\.0\.0\.1: no token")
    relay.process.wait_for_line(r"/metrics refused for 127\.0\.0\.1: wrong token")
    output = relay.process.output()
    refusals = [line for line in output.splitlines() if "/metrics refused for" in line]
    assert len(refusals) <= 10
    assert not any(guess in output for guess in guesses)


def test_metrics_are_never_served_on_a_tunnels_host(
    relay: Relay, local_app: LocalApp, lt_factory: LtLauncher
) -> None:
    lt = lt_factory(relay, local_app.port)
    headers = [("Authorization", f"Bearer {TOKEN}")]
    answer = relay.request("GET", "/metrics", name=lt.name, headers=headers)
    assert b"tunnelsite_" not in answer.body  # the app's answer, whatever it is
    missing = relay.request("GET", "/metrics", name="no-such-tunnel", headers=headers)
    assert missing.status == 404 and b"tunnelsite_" not in missing.body
    lt.stop()


# --- RELAY_METRICS_BIND's listener ----------------------------------------------------------
def test_the_listener_serves_metrics_without_a_token_and_nothing_else(
    relay: Relay, port: int
) -> None:
    answer = listener(port)
    assert answer.status == 200 and b"tunnelsite_accepting" in answer.body
    assert answer.header("content-type").startswith("text/plain; version=0.0.4")  # type: ignore[union-attr]
    head = listener(port, method="HEAD")
    assert head.status == 200 and head.body == b""
    for target in ("/", "/admin/", "/api/status", "/metrics/../admin/", "/healthz"):
        refused = listener(port, target)
        assert refused.status == 404, (target, refused)
        assert "only /metrics" in refused.json()["message"]
    assert listener(port, method="POST").status == 405
    # A tunnel's Host changes nothing: the listener knows no tunnels.
    with Visitor(port, relay.host("anything")) as visitor:
        assert visitor.request("GET", "/hello").status == 404


def _raw(port: int, data: bytes, timeout: float) -> tuple[bytes, float]:
    """Send `data`, read until the listener closes; what came back and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def test_a_slow_request_head_is_answered_408_at_its_deadline(port: int) -> None:
    answer, took = _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", IO_TIMEOUT_S)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert METRICS_HEAD_TIMEOUT_S - 0.5 <= took <= METRICS_HEAD_TIMEOUT_S + SLACK_S


def test_a_huge_request_head_is_refused_431_without_reading_it_all(port: int) -> None:
    head = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (METRICS_MAX_HEAD_BYTES * 2)
    answer, took = _raw(port, head, IO_TIMEOUT_S)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert took < METRICS_HEAD_TIMEOUT_S  # at once, not at the deadline


def test_garbage_gets_400(port: int) -> None:
    answer, _ = _raw(port, b"\x16\x03\x01 not http at all\r\n\r\n", IO_TIMEOUT_S)
    assert answer.startswith(b"HTTP/1.1 400 "), answer


def _still_open(sock: socket.socket) -> bool:
    """Whether the listener still holds `sock` open (nothing to read, no close yet)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""  # data: an answer came (it is not just held)
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


def test_a_flood_of_stalled_connections_is_bounded_and_cannot_keep_a_scrape_out(
    relay: Relay, port: int
) -> None:
    """More stalled connections than the listener serves at once: the oldest are dropped to
    make room (at most METRICS_MAX_CONNECTIONS are held), and a scrape made while the flood
    holds every slot is served at once, before the stalled ones' head deadline."""
    extra = 16
    held = []
    try:
        for _ in range(METRICS_MAX_CONNECTIONS + extra):
            sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finished
            held.append(sock)
        answer, _ = _raw(port, b"GET /metrics HTTP/1.1\r\n\r\n", IO_TIMEOUT_S)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
        newest = held[-1]
        assert _still_open(newest), "the scrape waited for the stalled heads' deadline"
        wait_until(
            lambda: sum(not _still_open(sock) for sock in held) >= extra + 1,
            IO_TIMEOUT_S,
            "the oldest stalled connections to be dropped (the scrape took a slot too)",
        )
        assert relay.get("/healthz").status == 200  # the relay itself is not held up
    finally:
        for sock in held:
            sock.close()


# --- start-up ---------------------------------------------------------------------------------
def _start_failure(db: Path, **env: str) -> str:
    done = subprocess.run(
        RELAY_COMMAND,
        env=relay_env(db, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, done
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_bind_that_cannot_be_had_stops_the_start_in_one_line(
    relay_template_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite3"
    shutil.copyfile(relay_template_db, db)
    for bad in ("nonsense", "127.0.0.1", "127.0.0.1:99999", "::1:9100", ":9100"):
        line = _start_failure(db, RELAY_METRICS_BIND=bad)
        assert "RELAY_METRICS_BIND" in line and "HOST:PORT" in line, (bad, line)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        line = _start_failure(db, RELAY_METRICS_BIND=f"127.0.0.1:{held}")
    assert f"cannot listen on 127.0.0.1:{held} (RELAY_METRICS_BIND" in line
    assert "Address already in use" in line


# --- cardinality ------------------------------------------------------------------------------
def _many_tunnels(relay: Relay, fake_client_factory: Callable[..., FakeTunnelClient]) -> set[str]:
    return {fake_client_factory(relay).name for _ in range(TUNNELS)}


def test_many_tunnels_add_no_series_by_default(
    relay: Relay, fake_client_factory: Callable[..., FakeTunnelClient]
) -> None:
    fake_client_factory(relay)  # one tunnel of the default plan: its series exist
    before = scrape(relay)
    names = _many_tunnels(relay, fake_client_factory)
    after = scrape(relay)
    assert value(after, "tunnelsite_tunnels", kind="http") >= TUNNELS
    assert len(after.splitlines()) == len(before.splitlines())  # the same series
    assert not any(name in after for name in names)
    assert series(after, "tunnelsite_tunnel_requests_total") == []


def test_per_tunnel_series_come_only_with_the_setting(
    relay_factory: Callable[..., Relay],
    fake_client_factory: Callable[..., FakeTunnelClient],
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN, RELAY_METRICS_PER_TUNNEL="true")
    names = _many_tunnels(relay, fake_client_factory)
    text = scrape(relay)
    labelled = {labels["tunnel"] for labels in series(text, "tunnelsite_tunnel_requests_total")}
    assert labelled == names
    promtool_check(text)
    assert {labels["plan"] for labels in series(text, "tunnelsite_tunnel_pool_sockets")} == {
        "default"
    }
