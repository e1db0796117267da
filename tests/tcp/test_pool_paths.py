"""The same bytes over each path a TCP tunnel's pool connections can take: upgraded inside
the relay's own TLS (runrelay --tls-cert, our lt with --ca: the encrypted pool), and raw
pool ports (--raw-pool) on a plain relay. The default path (upgraded over plain http) is
tests/tcp/test_bytes.py's."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from harness.relay import Relay
from harness.tcp_tunnels import LtTcp, LtTcpLauncher, free_port_range, make_users

from bench import tcp_transfer
from bench.tcp_transfer import connect, download, read_line, upload

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
SIZE = 16 * MIB


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA, certificate chain, key): the relay's certificate names 127.0.0.1, where lt
    registers, and localhost."""
    where = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    paths = (where / "ca.pem", where / "cert.pem", where / "key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return paths


@pytest.fixture(scope="module")
def tls_relay(
    module_relay_factory: Callable[..., Relay], ca_file: tuple[Path, Path, Path]
) -> Relay:
    _, cert, key = ca_file
    return module_relay_factory(
        RELAY_TLS_CERT=str(cert),
        RELAY_TLS_KEY=str(key),
        RELAY_TCP_PORTS=free_port_range(4),
    )


@pytest.fixture(scope="module")
def encrypted(
    lt_tcp: LtTcpLauncher, tls_relay: Relay, ca_file: tuple[Path, Path, Path], tcp_app: int
) -> Iterator[LtTcp]:
    (token,) = make_users(tls_relay.env, {"tls-user": []}).values()
    host = f"https://127.0.0.1:{tls_relay.port}"
    lt = lt_tcp(host, tcp_app, "--token", token, "--ca", str(ca_file[0]))
    try:
        yield lt
    finally:
        lt.process.stop()


@pytest.fixture(scope="module")
def raw(
    lt_tcp: LtTcpLauncher, relay_url: str, tcp_app: int, token_of: Callable[[], str]
) -> Iterator[LtTcp]:
    lt = lt_tcp(relay_url, tcp_app, "--token", token_of(), "--raw-pool")
    try:
        yield lt
    finally:
        lt.process.stop()


PATHS = ["encrypted", "raw"]


@pytest.fixture(params=PATHS)
def tunnel(request: pytest.FixtureRequest) -> LtTcp:
    return request.getfixturevalue(request.param)


def test_bytes_from_the_visitor_reach_the_app_whole(tunnel: LtTcp) -> None:
    assert upload(tunnel.port, SIZE).sha256_ok


def test_bytes_from_the_app_reach_the_visitor_whole(tunnel: LtTcp) -> None:
    assert download(tunnel.port, SIZE).sha256_ok


def test_both_ways_at_once_the_echo_comes_back_whole(tunnel: LtTcp) -> None:
    assert tcp_transfer.echo(tunnel.port, SIZE).sha256_ok


def test_half_close_passes_through(tunnel: LtTcp) -> None:
    data = b"x" * 100_000
    with connect(tunnel.port) as sock:
        sock.sendall(b"SINK\n" + data)
        sock.shutdown(socket.SHUT_WR)
        assert read_line(sock) == f"{len(data)} {hashlib.sha256(data).hexdigest()}"
        assert sock.recv(10) == b""


def test_one_pool_connection_serves_visitors_one_after_another(tunnel: LtTcp) -> None:
    # After EOF both ways a pool connection waits for the next OPEN: 30 visitors in a row
    # (more than the pool's 10 connections) each get their whole answer.
    for i in range(30):
        payload = f"visitor {i}".encode()
        with connect(tunnel.port) as sock:
            sock.sendall(b"SINK\n" + payload)
            sock.shutdown(socket.SHUT_WR)
            assert read_line(sock) == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
