"""A raw pipe's (npm) pool socket is checked right before it serves again (relay/pool/reuse.py
`quiet`): bytes or the end of the stream that reached the relay's socket after the last
answer, but that the loop has not read yet, close it; bytes also distrust its tunnel. Here
the socket is a real TCP connection no loop reads, so what the client sends stays unread
in the kernel, where only the check can see it."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from harness.socket_owner import Owner
from harness.waiting import wait_until

from relay.pool.socket import PoolSocket


class Transport:
    """The relay's end of the connection, as a transport that never reads it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "peername": self.sock.getpeername()}.get(name, default)

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


@pytest.fixture
def pair() -> Iterator[tuple[PoolSocket, Owner, Transport, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        relay_side, _ = listener.accept()
    relay_side.setblocking(False)
    owner = Owner()
    conn = PoolSocket(owner, 16384)
    transport = Transport(relay_side)
    conn.connection_made(transport)  # type: ignore[arg-type]
    try:
        yield conn, owner, transport, client
    finally:
        client.close()
        relay_side.close()


def pending(sock: socket.socket) -> bool:
    """Has something reached `sock` (bytes, or the end of the stream)?"""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def test_a_quiet_client_keeps_its_socket(pair: Any) -> None:
    conn, owner, transport, _ = pair
    assert conn.quiet()
    assert conn.quiet()  # asking costs nothing of the socket
    assert not transport.aborted and not conn.closed and not owner.distrusted


def test_a_byte_sent_after_the_answer_closes_the_socket_and_distrusts_the_tunnel(
    pair: Any,
) -> None:
    conn, owner, transport, client = pair
    client.sendall(b"H")
    wait_until(lambda: pending(transport.sock), 5, "the byte to reach the relay's socket")
    assert not conn.quiet()
    assert transport.aborted and conn.closed and owner.distrusted
    assert transport.sock.recv(1) == b"H"  # looked at, never taken


def test_a_client_that_closed_loses_the_socket_but_is_not_distrusted(pair: Any) -> None:
    conn, owner, transport, client = pair
    client.close()
    wait_until(lambda: pending(transport.sock), 5, "the end of the stream")
    assert not conn.quiet()
    assert transport.aborted and conn.closed and not owner.distrusted


def test_a_reset_connection_loses_the_socket_but_is_not_distrusted(pair: Any) -> None:
    conn, owner, transport, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # an RST, not a FIN
    wait_until(lambda: pending(transport.sock), 5, "the reset")
    assert not conn.quiet()
    assert transport.aborted and conn.closed and not owner.distrusted
