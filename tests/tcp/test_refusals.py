"""What a user sees when a TCP tunnel is refused, and a visitor the tunnel's rules refuse:
lt's message and exit code (tunnelsite_client/cli.py's codes: 3 for a 401, 4 for a 403), a reserved
port that works, and a CIDR deny that closes the visitor before the app hears of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness.relay import Relay
from harness.tcp_tunnels import LtTcpLauncher, make_users, run_refused

from bench.tcp_transfer import connect, stats, upload

pytestmark = pytest.mark.timeout(120)

EXIT_UNAUTHORIZED, EXIT_FORBIDDEN = (
    3,
    4,
)  # client/tunnelsite_client/cli.py EXIT_CODES for 401 and 403


@pytest.fixture(scope="module")
def reserver(tcp_relay: Relay) -> tuple[str, int]:
    """A user with the range's last port reserved: (token, port)."""
    port = int(tcp_relay.env["RELAY_TCP_PORTS"].split("-")[1])
    (token,) = make_users(tcp_relay.env, {"reserver": [port]}).values()
    return token, port


def test_a_relay_without_tcp_ports_says_so_and_lt_exits(
    module_relay_factory: Callable[..., Relay], tcp_app: int, tmp_path: Path
) -> None:
    relay = module_relay_factory()  # the defaults: RELAY_TCP_PORTS empty, TCP off
    (token,) = make_users(relay.env, {"no-tcp": []}).values()
    code, output = run_refused(
        f"http://localhost:{relay.port}", tcp_app, "--token", token, config_dir=tmp_path
    )
    assert code == EXIT_FORBIDDEN, output
    assert "This relay does not offer TCP tunnels" in output
    assert "RELAY_TCP_PORTS" in output  # what the operator must set
    assert "Traceback" not in output


def test_a_tunnel_without_a_token_is_refused_by_default(
    relay_url: str, tcp_app: int, tmp_path: Path
) -> None:
    code, output = run_refused(relay_url, tcp_app, config_dir=tmp_path)
    assert code == EXIT_UNAUTHORIZED, output
    assert "TCP tunnels need an account" in output
    assert "lt login" in output  # and how to get one
    assert "Traceback" not in output


def test_a_remote_port_that_is_not_reserved_for_the_user_is_refused(
    relay_url: str,
    tcp_app: int,
    token_of: Callable[[], str],
    reserver: tuple[str, int],
    tmp_path: Path,
) -> None:
    _, port = reserver  # reserved, but for someone else
    code, output = run_refused(
        relay_url,
        tcp_app,
        "--token",
        token_of(),
        "--remote-port",
        str(port),
        config_dir=tmp_path,
    )
    assert code == EXIT_FORBIDDEN, output
    assert f"Port {port} is not reserved for you" in output
    assert "Traceback" not in output


def test_a_reserved_port_is_the_tunnels_port(
    lt_tcp: LtTcpLauncher, relay_url: str, tcp_app: int, reserver: tuple[str, int]
) -> None:
    token, port = reserver
    lt = lt_tcp(relay_url, tcp_app, "--token", token, "--remote-port", str(port))
    try:
        assert lt.url == f"tcp://localhost:{port}"
        assert upload(port, 1000).sha256_ok
    finally:
        lt.process.stop()


def closed_unheard(port: int) -> bool:
    """A visitor's connection ends (FIN or reset, maybe before connect returns) without an
    answer."""
    try:
        with connect(port, timeout=5) as sock:
            sock.sendall(b"SINK\nrefused?")
            return sock.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_a_cidr_deny_closes_the_visitor_before_the_app_hears_of_it(
    lt_tcp: LtTcpLauncher, relay_url: str, tcp_app: int, token_of: Callable[[], str]
) -> None:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of(), "--cidr-deny", "127.0.0.0/8")
    try:
        _, before = stats(tcp_app)
        assert closed_unheard(lt.port)
        _, after = stats(tcp_app)
        assert after - before == 1  # only the STATS itself reached the app
    finally:
        lt.process.stop()


def test_a_cidr_allow_of_the_visitors_network_lets_it_through(
    lt_tcp: LtTcpLauncher, relay_url: str, tcp_app: int, token_of: Callable[[], str]
) -> None:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of(), "--cidr-allow", "127.0.0.0/8")
    try:
        assert upload(lt.port, 1000).sha256_ok
    finally:
        lt.process.stop()
