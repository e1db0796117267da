"""The public port's accept queue (relay/protocol.py PUBLIC_LISTEN_BACKLOG).

Connections that arrive while the relay is not accepting (its loop busy; here: the process
stopped with SIGSTOP, so nothing is accepted at all) wait in the kernel's queue. With
Twisted's default of 50, the SYNs past it were dropped and each of those visitors waited
for the retransmission a second later (300 connections at once to an idle relay: 15 waited
over a second). Here a burst of BURST connections is opened against a stopped relay: every
handshake completes, and once the relay runs again each connection gets its answer. Plain
http, the relay's own https port and its redirect port, all on their defaults.
"""

from __future__ import annotations

import select
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness.processes import Process, ProcessGroup
from harness.relay import Relay, free_port
from harness.waiting import IO_TIMEOUT_S

from .test_relay_tls import Certificate, fresh_db, make_certificate, tls_relay

TWISTED_DEFAULT_BACKLOG = 50
# Four times Twisted's default queue, and under RELAY_MAX_CONNECTIONS_PER_IP (256): all come
# from 127.0.0.1, and the relay's own per-address cap is not what this tests. The kernel
# caps any queue at net.core.somaxconn (4096 since Linux 5.4, 128 before): below that, a
# burst its size, still far past Twisted's 50.
SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())
BURST = min(200, SOMAXCONN)


@contextmanager
def stopped(process: Process) -> Iterator[None]:
    """The process stopped (SIGSTOP) inside the block, running again after it."""
    process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.signal(signal.SIGCONT)


def burst(port: int, count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """`count` connections opened at once: (those whose handshake completed within
    IO_TIMEOUT_S, those still waiting). Against a stopped relay only the kernel's queue
    completes a handshake; a SYN past it is dropped, and a retransmission meets a queue
    still full."""
    pending: dict[int, socket.socket] = {}
    poller = select.poll()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        pending[sock.fileno()] = sock
        poller.register(sock, select.POLLOUT)
    done: list[socket.socket] = []
    deadline = time.monotonic() + IO_TIMEOUT_S
    while pending and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            sock = pending.pop(fd)
            poller.unregister(fd)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            done.append(sock)
    return done, list(pending.values())


def ask(sock: socket.socket, request: bytes, tls: ssl.SSLContext | None) -> socket.socket:
    """Send `request` on `sock` (after a TLS handshake with `tls`); the socket to read."""
    sock.setblocking(True)
    sock.settimeout(IO_TIMEOUT_S)
    conn = sock if tls is None else tls.wrap_socket(sock, server_hostname="tls.localhost")
    conn.sendall(request)
    return conn


def answer(conn: socket.socket) -> bytes:
    """What the relay answered on `conn`, read until it closed the connection."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def queued_and_answered(
    process: Process, port: int, request: bytes, tls: ssl.SSLContext | None = None
) -> list[bytes]:
    """BURST connections to a stopped relay all complete; then each is answered."""
    with stopped(process):
        done, waiting = burst(port, BURST)
    conns: list[socket.socket] = []
    try:
        assert not waiting, (
            f"{len(waiting)} of {BURST} connections got no handshake from a busy relay: its "
            f"accept queue held {len(done)} (Twisted's default is {TWISTED_DEFAULT_BACKLOG})"
        )
        # Every request out before any answer is read: each connection's head deadline
        # (RELAY_HEADER_TIMEOUT_S) runs from its accept, when the relay runs again.
        conns = [ask(sock, request, tls) for sock in done]
        return [answer(conn) for conn in conns]
    finally:
        for sock in done + waiting + conns:
            sock.close()


def request(host: str) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def test_a_burst_against_a_busy_relay_is_queued_and_each_answered(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory()
    answers = queued_and_answered(relay.process, relay.port, request("localhost"))
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * BURST


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path, "backlog")


def test_the_https_port_and_the_redirect_port_queue_a_burst_too(
    group: ProcessGroup, certificate: Certificate, relay_template_db: Path, tmp_path: Path
) -> None:
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    certificate.install(cert, key)
    redirect = free_port()
    db = fresh_db(relay_template_db, tmp_path)
    relay, port = tls_relay(group, db, cert, key, RELAY_HTTP_REDIRECT_PORT=str(redirect))
    relay.wait_for_line(rf"http://127\.0\.0\.1:{redirect} redirects to https")
    secure = queued_and_answered(relay, port, request("tls.localhost"), certificate.context())
    assert [a.split(b"\r\n", 1)[0] for a in secure] == [b"HTTP/1.1 200 OK"] * BURST
    moved = queued_and_answered(relay, redirect, request(f"tls.localhost:{redirect}"))
    assert [a.split(b"\r\n", 1)[0] for a in moved] == [b"HTTP/1.1 308 Permanent Redirect"] * BURST
