"""A WebSocket joined through a relay, both ends speaking wsproto on real sockets: a visitor
on the public port and an app on a pool socket of a fake tunnel client. Each `Peer` floods
indexed messages from a thread and reads only when asked (tests/hardening)."""

from __future__ import annotations

import socket
import struct
import threading
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Message, Ping, Request

from harness.fake_client import FakeTunnelClient, PoolSocket
from harness.waiting import wait_until

MESSAGES = 200
MESSAGE_BYTES = 1_000_000  # under the 1 MiB message limit: 200 MB in all


def message(index: int) -> bytes:
    return struct.pack(">I", index) + bytes([index % 251]) * (MESSAGE_BYTES - 4)


class Peer:
    """One end of the WebSocket: sends from a thread, reads only when asked to."""

    def __init__(self, sock: socket.socket, ws: WSConnection) -> None:
        self.sock = sock
        self.ws = ws
        self.sent = 0
        self.failed: BaseException | None = None
        self._thread: threading.Thread | None = None

    def flood(self) -> None:
        def run() -> None:
            try:
                for index in range(MESSAGES):
                    self.sock.sendall(self.ws.send(Message(data=message(index))))
                    self.sent = index + 1
            except BaseException as exc:  # reported by the test
                self.failed = exc

        self.sock.settimeout(120)
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def flooding_stalled(self) -> int:
        """How many messages went out before the sender blocked: waits until the count has
        not moved for 2 s (the relay stopped reading) or every message is out."""
        last, since = -1, time.monotonic()

        def settled() -> bool:
            nonlocal last, since
            if self.sent >= MESSAGES or self.failed:
                return True
            if self.sent != last:
                last, since = self.sent, time.monotonic()
            return time.monotonic() - since > 2.0

        wait_until(settled, 120, "the flood to finish or block")
        assert self.failed is None, self.failed
        return self.sent

    def read_all(self, timeout: float = 120) -> list[int]:
        """Read until every message arrived; their indexes, checking each payload."""
        self.sock.settimeout(10)
        deadline = time.monotonic() + timeout
        indexes: list[int] = []
        parts: list[bytes] = []
        while len(indexes) < MESSAGES:
            assert time.monotonic() < deadline, f"only {len(indexes)} messages arrived"
            data = self.sock.recv(1 << 20)
            assert data, f"the connection closed after {len(indexes)} messages"
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, Ping):  # Daphne's keep-alive: answered, as browsers do
                    self.sock.sendall(self.ws.send(event.response()))
                    continue
                assert isinstance(event, BytesMessage), event
                parts.append(bytes(event.data))
                if event.message_finished:
                    whole = b"".join(parts)
                    parts = []
                    (index,) = struct.unpack(">I", whole[:4])
                    assert whole == message(index), f"message {index} arrived damaged"
                    indexes.append(index)
        return indexes

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=60)
            assert not self._thread.is_alive(), "the sender never finished"
        assert self.failed is None, self.failed


def open_pair(relay, tunnel: FakeTunnelClient, rcvbuf: int = 0) -> tuple[Peer, Peer]:
    """A visitor and an app joined through the relay; the app accepts on a pool socket.
    `rcvbuf`: the visitor's receive buffer (set before it connects), 0 for the system's."""
    (pool_socket,) = tunnel.connect(1)
    app_ws = WSConnection(ConnectionType.SERVER)

    def accept(pool: PoolSocket) -> None:
        request = pool.read_request()
        app_ws.receive_data(request.raw_head + b"\r\n\r\n")
        assert isinstance(next(app_ws.events()), Request)
        pool.send(app_ws.send(AcceptConnection()))

    accepting = threading.Thread(target=accept, args=(pool_socket,), daemon=True)
    accepting.start()
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", relay.port))
    visitor_ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(visitor_ws.send(Request(host=relay.host(tunnel.name), target="/ws")))
    while True:
        data = sock.recv(65536)
        assert data, "the relay closed the visitor's handshake"
        visitor_ws.receive_data(data)
        events = list(visitor_ws.events())
        if events:
            assert isinstance(events[0], AcceptConnection), events
            break
    accepting.join(timeout=10)
    assert not accepting.is_alive()
    return Peer(sock, visitor_ws), Peer(pool_socket.sock, app_ws)
