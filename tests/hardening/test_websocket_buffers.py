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
from collections.abc import Callable

import pytest
from harness.proc import rss_kib
from harness.waiting import wait_until
from harness.ws_pair import MESSAGES, Peer, open_pair
from wsproto.events import Message, Ping

MAX_GROWTH_KIB = 40 * 1024


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
