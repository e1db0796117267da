"""A WebSocket flood costs the relay a bounded amount of memory, in both directions.

Daphne gives no backpressure: `websocket.send` writes into Twisted's unbounded transport
buffer, and every message a visitor sends is queued for the relay at once. The relay stops
reading the sending side once the receiving side is behind (RELAY_WS_BUFFER_BYTES), so a
flood sent to a peer that does not read stays in the sender's socket buffers, and when the
reader resumes it gets every message, in order.

Both peers are real sockets speaking wsproto: the visitor on the relay's public port, the
local app on a pool socket of the fake tunnel client. Each message carries its index.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
from harness.fake_client import FakeTunnelClient, PoolSocket
from harness.proc import rss_kib
from harness.waiting import wait_until
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Message, Ping, Request

MESSAGES = 200
MESSAGE_BYTES = 1_000_000  # under the 1 MiB message limit: 200 MB in all
MAX_GROWTH_KIB = 40 * 1024


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


@pytest.fixture
def ws_relay(relay_factory):
    return relay_factory(RELAY_RESPONSE_TIMEOUT_S=60)


def flood_and_measure(
    relay, sender: Peer, reader: Peer, on_stalled: Callable[[], None] = lambda: None
) -> tuple[int, int]:
    """Flood from `sender` to `reader` (not reading); the relay's RSS growth in KiB and how
    many messages went out before the sender blocked. Then `reader` reads: all arrive."""
    before = rss_kib(relay.process.pid)
    sender.flood()
    sent_before_stall = sender.flooding_stalled()
    growth = rss_kib(relay.process.pid) - before
    on_stalled()
    indexes = reader.read_all()
    sender.join()
    assert indexes == list(range(MESSAGES))
    return growth, sent_before_stall


def test_an_app_flooding_a_visitor_who_does_not_read_costs_the_relay_bounded_memory(
    ws_relay, fake_client_factory
):
    visitor, app = open_pair(ws_relay, fake_client_factory(ws_relay))
    try:
        growth, sent = flood_and_measure(ws_relay, sender=app, reader=visitor)
    finally:
        visitor.sock.close()
        app.sock.close()

    assert sent < MESSAGES, f"the relay read the whole 200 MB flood (+{growth} KiB RSS)"
    assert growth < MAX_GROWTH_KIB, f"the relay grew by {growth} KiB"


def test_a_visitor_flooding_an_app_that_does_not_read_costs_the_relay_bounded_memory(
    ws_relay, fake_client_factory
):
    visitor, app = open_pair(ws_relay, fake_client_factory(ws_relay))
    try:
        growth, sent = flood_and_measure(ws_relay, sender=visitor, reader=app)
    finally:
        visitor.sock.close()
        app.sock.close()

    assert sent < MESSAGES, f"the relay read the whole 200 MB flood (+{growth} KiB RSS)"
    assert growth < MAX_GROWTH_KIB, f"the relay grew by {growth} KiB"


def test_a_visitor_who_leaves_while_the_app_does_not_read_frees_the_pool_socket(
    ws_relay, fake_client_factory
):
    """The relay stopped reading the visitor, so it learns the visitor left only from its
    keep-alive ping going unanswered (Daphne: after 20 s without a message, 30 s to
    answer); then the WebSocket ends although the app still reads nothing."""
    tunnel = fake_client_factory(ws_relay)
    visitor, app = open_pair(ws_relay, tunnel)
    try:
        visitor.flood()
        visitor.flooding_stalled()
        visitor.sock.shutdown(socket.SHUT_RDWR)  # gone: reads nothing, answers no ping
        # The app reads nothing: watch the relay's count of the tunnel's sockets instead.
        wait_until(lambda: not ws_relay.sockets(tunnel.name), 90, "the pool socket to be freed")
    finally:
        visitor.sock.close()
        app.sock.close()


def flood_frames(sock: socket.socket, frame: bytes, limit: int) -> int:
    """Send `frame` over and over until `limit` bytes went out or the relay stops reading
    (nothing goes out for 2 s); the bytes sent."""
    batch = frame * max(1, 65536 // len(frame))
    sock.settimeout(2)
    sent = 0
    try:
        while sent < limit:
            sock.sendall(batch)
            sent += len(batch)
    except TimeoutError:
        pass
    return sent


def test_a_flood_of_tiny_messages_at_an_app_that_does_not_read_costs_bounded_memory(
    ws_relay, fake_client_factory
):
    """Each queued message costs far more than its one byte: the bound counts that too."""
    visitor, app = open_pair(ws_relay, fake_client_factory(ws_relay))
    try:
        before = rss_kib(ws_relay.process.pid)
        sent = flood_frames(visitor.sock, visitor.ws.send(Message(data=b"y")), 20_000_000)
        growth = rss_kib(ws_relay.process.pid) - before
    finally:
        visitor.sock.close()
        app.sock.close()

    assert sent < 20_000_000, f"the relay read the whole flood (+{growth} KiB RSS)"
    assert growth < MAX_GROWTH_KIB, f"the relay grew by {growth} KiB"


def test_pings_from_a_visitor_who_never_reads_the_pongs_cost_bounded_memory(
    ws_relay, fake_client_factory
):
    visitor, app = open_pair(ws_relay, fake_client_factory(ws_relay))
    try:
        before = rss_kib(ws_relay.process.pid)
        sent = flood_frames(visitor.sock, visitor.ws.send(Ping(b"p" * 125)), 100_000_000)
        growth = rss_kib(ws_relay.process.pid) - before
    finally:
        visitor.sock.close()
        app.sock.close()

    assert sent < 100_000_000, f"the relay read the whole flood (+{growth} KiB RSS)"
    assert growth < MAX_GROWTH_KIB, f"the relay grew by {growth} KiB"


def test_pings_from_an_app_that_never_reads_the_pongs_cost_bounded_memory(
    ws_relay, fake_client_factory
):
    visitor, app = open_pair(ws_relay, fake_client_factory(ws_relay))
    try:
        before = rss_kib(ws_relay.process.pid)
        sent = flood_frames(app.sock, app.ws.send(Ping(b"p" * 125)), 100_000_000)
        growth = rss_kib(ws_relay.process.pid) - before
    finally:
        visitor.sock.close()
        app.sock.close()

    assert sent < 100_000_000, f"the relay read the whole flood (+{growth} KiB RSS)"
    assert growth < MAX_GROWTH_KIB, f"the relay grew by {growth} KiB"
