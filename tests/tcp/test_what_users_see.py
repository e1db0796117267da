"""What the people around a TCP tunnel see: `lt tcp --print-requests` logs each visitor
connection; a tunnel whose app is down closes its visitors at once and `lt` says why, then
serves again once the app listens; an HTTP visitor of the tunnel's name is told it is a TCP
tunnel; an idle connection is closed after RELAY_TCP_IDLE_TIMEOUT_S; a visitor who finds
every pool connection busy is closed after RELAY_TCP_WAIT_S, unheard by the app."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest
from harness.processes import PYTHON, ProcessGroup
from harness.relay import Relay, free_port
from harness.tcp_tunnels import LtTcpLauncher, free_port_range, make_users, tunnel_name
from harness.waiting import poll

from bench.procs import client_env
from bench.tcp_transfer import IO_TIMEOUT_S, connect, stats, upload

pytestmark = pytest.mark.timeout(120)

CLOSED_WITHIN_S = 5.0
# The idle timeout this file's second relay runs with (the setting under test), and the
# slack a loaded machine needs on top of it.
IDLE_S = 1.0
SLACK_S = 4.0


def ended(port: int, send: bytes) -> bool:
    """A visitor who sends `send` sees its connection end (a FIN or a reset, maybe before
    connect returns) in time."""
    try:
        with connect(port, timeout=CLOSED_WITHIN_S) as sock:
            sock.sendall(send)
            return sock.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_print_requests_logs_each_visitor_connection_with_its_bytes(
    lt_tcp: LtTcpLauncher, relay_url: str, tcp_app: int, token_of: Callable[[], str]
) -> None:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of(), "--print-requests")
    try:
        assert upload(lt.port, 3000).sha256_ok  # 5 + 3000 bytes in, the 70-byte answer out
        line = lt.process.wait_for_line(r"visitor 127\.0\.0\.1:\d+ .* in .* out .* s")
        assert re.search(
            r"visitor 127\.0\.0\.1:\d+  2\.9 KiB in  70 B out  \d+\.\d s$", line.group(0)
        )
    finally:
        lt.process.stop()


def test_an_app_that_is_down_closes_its_visitors_and_lt_says_so_until_it_listens(
    lt_tcp: LtTcpLauncher,
    relay_url: str,
    token_of: Callable[[], str],
    group: ProcessGroup,
) -> None:
    port = free_port()  # nothing listens there yet
    lt = lt_tcp(relay_url, port, "--token", token_of())
    try:
        assert ended(lt.port, b"SINK\nanyone?"), "the visitor was left hanging"
        lt.process.wait_for_line(rf"local app at localhost:{port} unreachable: .*refused")
        assert ended(lt.port, b"SINK\nstill nobody?")  # and again: lt reopened its pool
        app = group.start(
            [PYTHON, "-u", "-m", "bench.tcp_app", "--port", str(port)],
            client_env(),
            name="late app",
        )
        app.wait_for_line(r"tcp app listening")
        assert poll(lambda: upload(lt.port, 1000).sha256_ok, IO_TIMEOUT_S)
    finally:
        lt.process.stop()


def test_an_http_visitor_of_a_tcp_tunnels_name_is_told_where_to_connect(
    lt_tcp: LtTcpLauncher,
    relay_url: str,
    tcp_relay: Relay,
    tcp_app: int,
    token_of: Callable[[], str],
) -> None:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of())
    try:
        name = tunnel_name(tcp_relay, lt.port)
        answer = tcp_relay.get("/", name=name)
        assert answer.status == 404
        assert "TCP tunnel" in answer.body.decode() and lt.url in answer.body.decode()
        assert upload(lt.port, 1000).sha256_ok  # its pool connections were not touched
    finally:
        lt.process.stop()


@pytest.fixture(scope="module")
def idle_relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    return module_relay_factory(
        RELAY_TCP_PORTS=free_port_range(2), RELAY_TCP_IDLE_TIMEOUT_S=str(IDLE_S)
    )


@pytest.fixture(scope="module")
def idle_tunnel_port(lt_tcp: LtTcpLauncher, idle_relay: Relay, tcp_app: int) -> Iterator[int]:
    (token,) = make_users(idle_relay.env, {"idle": []}).values()
    lt = lt_tcp(f"http://localhost:{idle_relay.port}", tcp_app, "--token", token)
    try:
        yield lt.port
    finally:
        lt.process.stop()


def test_a_silent_connection_is_closed_after_the_idle_timeout(idle_tunnel_port: int) -> None:
    with connect(idle_tunnel_port) as sock:
        sock.sendall(b"ECHO\nawake")
        assert sock.recv(100) == b"awake"
        started = time.monotonic()
        sock.settimeout(IDLE_S + SLACK_S)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started >= IDLE_S * 0.9


def test_a_busy_connection_outlives_the_idle_timeout(idle_tunnel_port: int) -> None:
    # Bytes either way keep it open: an echo every third of the timeout, for two timeouts.
    with connect(idle_tunnel_port) as sock:
        sock.sendall(b"ECHO\n")
        deadline = time.monotonic() + 2 * IDLE_S
        while time.monotonic() < deadline:
            sock.sendall(b"tick")
            sock.settimeout(IO_TIMEOUT_S)
            assert sock.recv(100) == b"tick"
            sock.settimeout(IDLE_S / 3)  # the pause between ticks: nothing comes unasked
            with pytest.raises(TimeoutError):
                sock.recv(100)


WAIT_S = 1.0  # RELAY_TCP_WAIT_S of the relay below (the setting under test)
POOL = 10  # RELAY_MAX_SOCKETS' default


@pytest.fixture(scope="module")
def short_wait_relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    return module_relay_factory(RELAY_TCP_PORTS=free_port_range(2), RELAY_TCP_WAIT_S=str(WAIT_S))


def test_a_visitor_who_finds_the_pool_busy_waits_then_is_closed_unheard(
    lt_tcp: LtTcpLauncher, short_wait_relay: Relay, tcp_app: int
) -> None:
    (token,) = make_users(short_wait_relay.env, {"busy": []}).values()
    lt = lt_tcp(f"http://localhost:{short_wait_relay.port}", tcp_app, "--token", token)
    held = [connect(lt.port) for _ in range(POOL)]
    try:
        for sock in held:  # every pool connection carries one of them
            sock.sendall(b"ECHO\nheld")
            assert sock.recv(100) == b"held"
        _, before = stats(tcp_app)
        started = time.monotonic()
        assert ended(lt.port, b"ECHO\nlet me in"), "the extra visitor was not closed"
        waited = time.monotonic() - started
        assert WAIT_S * 0.9 <= waited <= WAIT_S + SLACK_S, waited
        _, after = stats(tcp_app)
        assert after - before == 1  # only the STATS: the app never heard of the extra one
    finally:
        for sock in held:
            sock.close()
        lt.process.stop()
