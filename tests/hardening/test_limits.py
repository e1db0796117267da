"""Limits that keep slow or idle visitors from holding the relay's resources.

- A request head must arrive within RELAY_HEADER_TIMEOUT_S of its first byte (of the
  connection, for the first request); bytes trickled in do not extend it (slowloris).
- A keep-alive connection with nothing to do is closed after RELAY_IDLE_TIMEOUT_S.
- A visitor who reads a large response slowly costs the relay a bounded amount of memory:
  the relay stops reading the pool socket until the visitor catches up.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
from harness.fake_client import FakeTunnelClient, UpgradingTunnelClient
from harness.http import Visitor
from harness.proc import rss_kib
from harness.waiting import wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Message, Request

HEADER_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 2.5


@pytest.fixture(scope="module")
def limits_relay(module_relay_factory):
    return module_relay_factory(
        RELAY_HEADER_TIMEOUT_S=HEADER_TIMEOUT_S,
        RELAY_IDLE_TIMEOUT_S=IDLE_TIMEOUT_S,
        RELAY_RESPONSE_TIMEOUT_S=30,
    )


@pytest.fixture
def tunnel(limits_relay):
    client = FakeTunnelClient(limits_relay)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=[FakeTunnelClient, UpgradingTunnelClient], ids=["raw-pool", "upgraded-pool"])
def either_tunnel(request, limits_relay):
    """A fake client on a raw pool socket, or on an upgraded pool connection (Twisted's)."""
    client = request.param(limits_relay)
    try:
        yield client
    finally:
        client.close()


def test_a_visitor_trickling_a_request_head_gets_408_after_the_header_timeout(limits_relay):
    head = f"GET /slow HTTP/1.1\r\nHost: {limits_relay.host('nobody')}\r\nX-Pad: ".encode()
    with Visitor(limits_relay.port, timeout=5) as visitor:
        started = time.monotonic()
        visitor.sock.settimeout(0.2)
        answer_bytes = b""
        # One byte every 0.1 s: each byte would reset an idle timeout, not this deadline.
        for byte in (head + b"x" * 100)[:100]:
            try:
                visitor.sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer_bytes = visitor.sock.recv(65536)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started

    assert answer_bytes.startswith(b"HTTP/1.1 408 "), answer_bytes
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed < HEADER_TIMEOUT_S + 1.5


@pytest.mark.parametrize(
    "unfinished",
    [b"GET /next HTTP/1.1\r\nHost: {host}\r\n", b"GET /next HT"],
    ids=["whole-lines", "half-a-line"],
)
def test_a_head_left_unfinished_after_one_answered_at_once_gets_408_in_time(
    limits_relay, unfinished
):
    """Daphne answers a bad header value at once, inside the read that brought it; the next
    head begun in the same read once had no deadline (the first request's end cleared the
    flag that arms it) and held the connection until the idle timeout, without an answer."""
    host = limits_relay.host("nobody").encode()
    with Visitor(limits_relay.port, timeout=5) as visitor:
        started = time.monotonic()
        visitor.send(
            b"GET / HTTP/1.1\r\nHost: %s\r\nX-A: a\x0bb\r\n\r\n" % host
            + unfinished.replace(b"{host}", host)
        )
        assert visitor.response().status == 400  # Daphne's page
        late = visitor.response()
        elapsed = time.monotonic() - started

    assert late.status == 408 and b"did not arrive" in late.body, late
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed < IDLE_TIMEOUT_S


def test_a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout(limits_relay):
    with Visitor(limits_relay.port, timeout=5) as visitor:
        started = time.monotonic()
        assert visitor.is_closed(timeout=HEADER_TIMEOUT_S + 2)
        assert time.monotonic() - started >= HEADER_TIMEOUT_S - 0.1


def test_a_keep_alive_connection_may_idle_past_the_header_timeout_then_is_closed_when_idle(
    limits_relay, tunnel
):
    (pool_socket,) = tunnel.connect(1)
    with limits_relay.visitor(tunnel.name) as visitor:
        for target in ("/first", "/second"):
            visitor.send(f"GET {target} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
            request = pool_socket.read_request()
            assert request.target == target
            pool_socket.respond(200, target.encode())
            assert visitor.response().body == target.encode()
            if target == "/first":
                # The passage of time is what is tested: longer than the header deadline.
                time.sleep(HEADER_TIMEOUT_S + 0.5)
        idle_from = time.monotonic()
        assert visitor.is_closed(timeout=IDLE_TIMEOUT_S + 3)
        assert time.monotonic() - idle_from >= IDLE_TIMEOUT_S - 0.2


def test_the_idle_timeout_counts_from_the_last_answer_never_during_one(limits_relay, tunnel):
    """relay/edge/idle.py keeps one timer that fires early and is set again for the rest:
    a connection used every second for twice the idle timeout stays open, a response that
    takes longer than the idle timeout is not cut, and the idle timeout then still closes
    the connection, counted from the last answer."""
    (pool_socket,) = tunnel.connect(1)
    with limits_relay.visitor(tunnel.name) as visitor:
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < 2 * IDLE_TIMEOUT_S:
            count += 1
            visitor.send(f"GET /{count} HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
            assert pool_socket.read_request().target == f"/{count}"
            pool_socket.respond(200, b"%d" % count)
            assert visitor.response().body == b"%d" % count
            time.sleep(IDLE_TIMEOUT_S / 3)  # the passage of time is what is tested
        visitor.send(f"GET /slow HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        assert pool_socket.read_request().target == "/slow"
        time.sleep(IDLE_TIMEOUT_S + 0.5)  # the app takes longer than the idle timeout
        pool_socket.respond(200, b"slow")
        assert visitor.response().body == b"slow"
        idle_from = time.monotonic()
        assert visitor.is_closed(timeout=IDLE_TIMEOUT_S + 3)
        assert time.monotonic() - idle_from >= IDLE_TIMEOUT_S - 0.2


def test_a_slow_upload_is_bounded_by_the_idle_timeout_not_the_header_deadline(limits_relay, tunnel):
    (pool_socket,) = tunnel.connect(1)
    body = b"0123456789"
    with limits_relay.visitor(tunnel.name) as visitor:
        head = f"POST /up HTTP/1.1\r\nHost: {visitor.host}\r\nContent-Length: {len(body)}\r\n"
        visitor.send(head.encode() + b"\r\n")
        for byte in body:  # 10 bytes over 1.5 s: longer than the header deadline
            time.sleep(0.15)
            visitor.send(bytes([byte]))
        request = pool_socket.read_request()
        pool_socket.respond(200, b"got it")
        answer = visitor.response("POST")

    assert (answer.status, request.body) == (200, body)


class WebSocketApp:
    """The tunnel side of a WebSocket: accepts the relay's handshake on a pool socket and
    reads or writes messages with wsproto, so sizes are checked on real frames."""

    def __init__(self, pool_socket) -> None:
        self.pool_socket = pool_socket
        self.ws = WSConnection(ConnectionType.SERVER)

    def accept(self) -> None:
        request = self.pool_socket.read_request()
        self.ws.receive_data(request.raw_head + b"\r\n\r\n")
        assert isinstance(next(self.ws.events()), Request)
        self.pool_socket.send(self.ws.send(AcceptConnection()))

    def next_event(self, timeout: float = 10) -> object:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.ws.events():
                return event
            self.pool_socket.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.pool_socket.sock.recv(1 << 20)
            self.ws.receive_data(data or None)

    def send(self, payload: bytes) -> None:
        self.pool_socket.send(self.ws.send(Message(data=payload)))


def open_websocket(relay, tunnel):
    (pool_socket,) = tunnel.connect(1)
    app = WebSocketApp(pool_socket)
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    url = f"ws://{relay.host(tunnel.name)}/ws"
    accepting = threading.Thread(target=app.accept, daemon=True)
    accepting.start()
    visitor = ws_connect(url, sock=sock, max_size=None, open_timeout=10, close_timeout=2)
    accepting.join(timeout=10)
    return visitor, app


def test_a_websocket_message_of_1_mib_goes_through_whole(limits_relay, tunnel):
    payload = os.urandom(1024 * 1024)
    visitor, app = open_websocket(limits_relay, tunnel)
    with visitor:
        visitor.send(payload)
        event = app.next_event()

        assert isinstance(event, BytesMessage)
        parts = [bytes(event.data)]
        while not event.message_finished:
            event = app.next_event()
            parts.append(bytes(event.data))
        assert b"".join(parts) == payload


def test_a_websocket_message_over_1_mib_from_a_visitor_never_reaches_the_tunnel(
    limits_relay, tunnel
):
    visitor, app = open_websocket(limits_relay, tunnel)
    with visitor:
        visitor.send(os.urandom(1024 * 1024 + 1))

        # Daphne (autobahn, failByDrop) drops the connection without a close frame.
        with pytest.raises(ConnectionClosed):
            visitor.recv(timeout=10)
    assert isinstance(app.next_event(), CloseConnection)


def test_a_websocket_message_over_1_mib_from_the_tunnel_closes_with_4009(limits_relay, tunnel):
    visitor, app = open_websocket(limits_relay, tunnel)
    with visitor:
        app.send(os.urandom(1024 * 1024 + 1))

        with pytest.raises(ConnectionClosed) as closed:
            visitor.recv(timeout=10)
    # 1009 (message too big), carried as 4009: Daphne cannot send 1009 itself.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009
    assert app.next_event() == CloseConnection(code=1009, reason="")


def test_a_visitor_reading_50_mib_slowly_costs_the_relay_only_a_few_mib(
    limits_relay, either_tunnel
):
    tunnel = either_tunnel
    size = 50 * 1024 * 1024
    block = hashlib.sha256(b"block").digest() * 2048  # 64 KiB, not compressible by accident
    (pool_socket,) = tunnel.connect(1)
    pid = limits_relay.process.pid
    visitor = Visitor(limits_relay.port, limits_relay.host(tunnel.name), timeout=30)
    visitor.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    written = [0]
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            pool_socket.read_request(timeout=10)
            pool_socket.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            while written[0] < size:
                pool_socket.sock.sendall(block)
                written[0] += len(block)
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    writer = threading.Thread(target=serve, daemon=True)
    try:
        visitor.send(f"GET /big HTTP/1.1\r\nHost: {visitor.host}\r\n\r\n".encode())
        baseline = rss_kib(pid)
        writer.start()

        # The client writes until the relay stops reading; then nothing moves.
        samples: list[int] = []

        def writes_stalled() -> bool:
            samples.append(written[0])
            return len(samples) >= 4 and samples[-1] == samples[-4] > 0

        wait_until(writes_stalled, timeout=20, message="the client's writes to stall")
        stalled_at = written[0]
        grown_kib = rss_kib(pid) - baseline
        assert stalled_at < size // 2, "the relay kept reading from the pool socket"

        # Read at about 1 KB/s for two seconds: memory stays where it was.
        head = visitor.read_some(5)
        received = len(head)
        for _ in range(20):
            time.sleep(0.1)  # pacing the slow reader, not synchronisation
            received += len(visitor.sock.recv(100))
        grown_while_slow_kib = rss_kib(pid) - baseline

        # Then read the rest at full speed: every byte arrives.
        visitor.sock.settimeout(30)
        total = received
        while True:
            data = visitor.sock.recv(1 << 20)
            if not data:
                break
            total += len(data)
            if total >= size + len(head.split(b"\r\n\r\n", 1)[0]) + 4:
                break
        writer.join(timeout=30)
    finally:
        visitor.close()

    assert not failure, failure
    header_bytes = len(head.split(b"\r\n\r\n", 1)[0]) + 4
    assert total - header_bytes == size
    print(f"relay RSS growth: {grown_kib} KiB when the client's writes stalled after")
    print(f"{stalled_at} bytes, {grown_while_slow_kib} KiB while the visitor read at 1 KB/s")
    assert grown_kib < 8 * 1024
    assert grown_while_slow_kib < 8 * 1024
