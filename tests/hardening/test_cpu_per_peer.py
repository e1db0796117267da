"""One hostile peer costs the relay bounded CPU and memory: the others are still served.

The relay runs on one event loop. A peer that sends many tiny units (1-byte response chunks,
1-byte WebSocket messages, a 1-byte-chunk upload) costs a Python event each; before these
bounds, one such peer held the loop for seconds between two turns and every other visitor
waited. Each test floods from one peer while a probe times `/healthz` on the bare domain
(everything shares the loop) and watches the relay's RSS, and checks that the flood's data
still arrives whole and in order. Relays run with default settings.

Numbers measured on the 2-core development machine (shared, so the bound is generous):
`/healthz` took 2 ms idle; before the fix, during a 1-byte-chunk response it took a median
of 3.7 s, during a 1-byte WebSocket message flood up to 30 s, during a 1-byte-chunk upload
~1 s. The bound asserted is 1 s for every probe.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import h11
import pytest
from harness.fake_client import fresh_loopback
from harness.proc import rss_kib
from harness.waiting import wait_until
from harness.ws_pair import Peer, open_pair
from wsproto import WSConnection
from wsproto.events import Message, Ping, TextMessage

# Every /healthz answered within this while the flood runs. What these tests caught was a
# relay that answered nothing for up to 30 s; a relay that yields answers in well under a
# second alone (median ~0.16 s, worst 0.57-0.84 s over six runs of the visitor flood, before
# and after issue 13 alike), but under `make test` the other workers (Chromium, cluster
# nodes) share the 2 cores and the worst probe reached 1.06 and 1.14 s with the median still
# 0.16 s: 1 s measured the machine's load, 3 s still tells a stalled relay from a busy one.
MAX_PROBE_S = 3.0


class HealthProbe:
    """Times `GET /healthz` on the relay's bare domain, one after another, in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _once(self) -> float:
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: localhost:{self.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        return time.monotonic() - start

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.latencies.append(self._once())
                self._stop.wait(0.05)  # a probe every ~50 ms, not a flood of our own
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)

    def check(self, minimum: int = 3) -> None:
        assert self.failure is None, self.failure
        assert self.latencies, "no probe was answered"
        worst = max(self.latencies)
        median = sorted(self.latencies)[len(self.latencies) // 2]
        print(f"/healthz: {len(self.latencies)} probes, median {median:.3f} s, max {worst:.3f} s")
        assert worst < MAX_PROBE_S, (
            f"/healthz took up to {worst:.2f} s (median {median:.3f} s) during the flood"
        )
        # Fewer probes than this: one of them was held for most of the flood.
        assert len(self.latencies) >= minimum, f"only {len(self.latencies)} probes ran"


@pytest.fixture
def default_relay(relay_factory):
    return relay_factory()


# --- F2: a response of 1-byte chunks ---------------------------------------------------------
CHUNKS = 300_000  # 1.8 MB on the wire, 300,000 h11 events


def chunk_pattern(count: int) -> bytes:
    return bytes(i % 251 for i in range(count))


def read_chunked_response(sock: socket.socket, timeout: float) -> bytes:
    """The visitor's side: one response, decoded with h11; its whole body."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    body = bytearray()
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            assert time.monotonic() < deadline, f"only {len(body)} bytes arrived"
            conn.receive_data(sock.recv(1 << 20))
        elif isinstance(event, h11.Response):
            assert event.status_code == 200, event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            raise AssertionError(f"unexpected {event!r}")


def test_a_response_of_one_byte_chunks_leaves_the_relay_responsive(
    default_relay, fake_client_factory
):
    """Before: one chunk was one h11 event, one `send` and one Twisted write, all in one
    turn of the loop per read (up to 1 MiB); /healthz waited seconds. After: the chunks of a
    read are coalesced into one write, and the relay yields every EVENTS_PER_TURN events."""
    relay = default_relay
    tunnel = fake_client_factory(relay)
    (pool,) = tunnel.connect(1)
    pattern = chunk_pattern(CHUNKS)
    app_failed: list[BaseException] = []

    def app() -> None:
        try:
            pool.read_request()
            pool.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            pool.sock.settimeout(60)
            for start in range(0, CHUNKS, 20_000):
                piece = pattern[start : start + 20_000]
                pool.sock.sendall(b"".join(b"1\r\n" + bytes([b]) + b"\r\n" for b in piece))
            pool.sock.sendall(b"0\r\n\r\n")
        except BaseException as exc:
            app_failed.append(exc)

    before = rss_kib(relay.process.pid)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as visitor:
        visitor.sendall(f"GET / HTTP/1.1\r\nHost: {relay.host(tunnel.name)}\r\n\r\n".encode())
        sender = threading.Thread(target=app, daemon=True)
        with HealthProbe(relay.port) as probe:
            sender.start()
            body = read_chunked_response(visitor, 60)
        sender.join(timeout=30)
    growth = rss_kib(relay.process.pid) - before

    assert not app_failed, app_failed
    assert body == pattern, "the visitor's body differs from what the app sent"
    probe.check()
    assert growth < 64 * 1024, f"the relay grew by {growth} KiB"


# --- F3: a flood of 1-byte WebSocket messages ------------------------------------------------
WS_MESSAGES = 150_000


def flood_indexed(sock: socket.socket, ws: WSConnection, count: int) -> None:
    """Send `count` text messages "0", "1", ... in batches (a sendall per 2,000)."""
    sock.settimeout(120)
    for start in range(0, count, 2_000):
        sock.sendall(
            b"".join(ws.send(Message(data=str(i))) for i in range(start, min(count, start + 2_000)))
        )


def read_indexed(peer: Peer, count: int | Callable[[], int], timeout: float) -> None:
    """Read until `count` messages arrived (a callable: until it returns how many were
    sent, -1 while sending goes on); each must be the next index."""
    total = count if callable(count) else lambda: count
    peer.sock.settimeout(1.0)  # then the count is asked again
    deadline = time.monotonic() + timeout
    expected = 0
    text = ""
    while expected != total():
        assert time.monotonic() < deadline, f"only {expected} messages arrived"
        try:
            data = peer.sock.recv(1 << 20)
        except TimeoutError:
            continue
        assert data, f"the connection closed after {expected} messages"
        peer.ws.receive_data(data)
        for event in peer.ws.events():
            if isinstance(event, Ping):  # Daphne's keep-alive: answered, as browsers do
                peer.sock.sendall(peer.ws.send(event.response()))
                continue
            assert isinstance(event, TextMessage), event
            text += event.data
            if event.message_finished:
                assert text == str(expected), f"message {expected} arrived as {text!r}"
                expected += 1
                text = ""


def flood_while_probing(relay, sender, reader) -> None:
    """`sender` floods WS_MESSAGES tiny messages, `reader` reads them all, while /healthz is
    probed; the probe's check fails the test if the relay stopped answering."""
    flooder = threading.Thread(
        target=flood_indexed, args=(sender.sock, sender.ws, WS_MESSAGES), daemon=True
    )
    try:
        with HealthProbe(relay.port) as probe:
            flooder.start()
            read_indexed(reader, WS_MESSAGES, 60)
        flooder.join(timeout=30)
    finally:
        sender.sock.close()
        reader.sock.close()
    probe.check()


def test_an_app_flooding_tiny_websocket_messages_leaves_the_relay_responsive(
    default_relay, fake_client_factory
):
    """Before: a whole read (up to ~1 MiB, ~350k frames) was parsed into a list and sent to
    Daphne message by message in one turn of the loop (/healthz up to 30 s)."""
    visitor, app = open_pair(default_relay, fake_client_factory(default_relay))
    flood_while_probing(default_relay, sender=app, reader=visitor)


def test_a_visitor_flooding_tiny_websocket_messages_leaves_the_relay_responsive(
    default_relay, fake_client_factory
):
    """The other direction: every message was a write to the pool socket of its own, and
    the relay took queued messages without yielding."""
    visitor, app = open_pair(default_relay, fake_client_factory(default_relay))
    flood_while_probing(default_relay, sender=visitor, reader=app)


NOREAD_SOCKETS = 4
# Daphne's WebSocket keep-alive (daphne.server.Server's defaults, which runrelay keeps).
DAPHNE_PING_INTERVAL_S = 20
DAPHNE_PING_TIMEOUT_S = 30


class Flood:
    """An app that sends indexed text messages in batches until told to stop."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        # A small send buffer: the relay's backpressure is what is tested, not how many
        # megabytes of 6-byte messages the kernel holds for the app. With Linux's autotuned
        # buffer (up to 4 MB) the relay had that many to parse before the floods blocked, and
        # on a machine busy with the rest of the suite that took over 50 s: past Daphne's
        # WebSocket keep-alive (a ping every 20 s, dropped without a pong within 30 s), which
        # a visitor that does not read cannot answer, so the reading visitor found its
        # connection reset.
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.peer.sock.settimeout(120)
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                start = self.sent
                self.peer.sock.sendall(
                    b"".join(
                        self.peer.ws.send(Message(data=str(i))) for i in range(start, start + 2_000)
                    )
                )
                self.sent = start + 2_000


def test_tiny_websocket_messages_to_visitors_who_do_not_read_cost_bounded_memory(
    default_relay, fake_client_factory
):
    """Before: the relay parsed a whole read into wsproto events before it looked at the
    visitor's backpressure: ~50 MB of RSS per WebSocket (f5c_ws_tiny_noread.py). After:
    it stops taking messages as soon as Twisted says the visitor is behind."""
    relay = default_relay
    pairs = []
    floods: list[Flood] = []
    opened = time.monotonic()
    try:
        for _ in range(NOREAD_SOCKETS):
            tunnel = fake_client_factory(relay, source=fresh_loopback())
            pairs.append(open_pair(relay, tunnel, rcvbuf=4096))
        before = rss_kib(relay.process.pid)
        floods = [Flood(app) for _, app in pairs]
        # Settled: no app could send a batch for 2 s (the relay stopped reading them all).
        last, since = -1, time.monotonic()

        def settled() -> bool:
            nonlocal last, since
            total = sum(flood.sent for flood in floods)
            if total != last:
                last, since = total, time.monotonic()
            return time.monotonic() - since > 2.0

        # Until then the apps fill the kernel's buffers (megabytes of 6-byte messages) as
        # fast as the relay parses them: on a machine busy with other tests that took over
        # 30 s once (make test, fresh machine), so the deadline is generous; what is asserted
        # is the memory once they block, not how soon.
        wait_until(settled, 75, "the floods to block")
        growth = rss_kib(relay.process.pid) - before
        assert growth < 32 * 1024, f"the relay grew by {growth} KiB for {NOREAD_SOCKETS} sockets"
        # Nothing was lost: the first visitor now reads every message sent, in order.
        for flood in floods:
            flood.stop.set()
        for visitor, _ in pairs[1:]:
            visitor.sock.close()
        try:
            read_indexed(
                pairs[0][0], lambda: floods[0].sent if not floods[0].thread.is_alive() else -1, 60
            )
        except ConnectionResetError:
            # Daphne's WebSocket keep-alive drops a visitor that answers no ping (one every
            # DAPHNE_PING_INTERVAL_S, a pong due within DAPHNE_PING_TIMEOUT_S): a visitor
            # that reads nothing for that long is gone by design, and on a machine busy with
            # the rest of the suite the floods took that long to block (a fresh clone's make
            # test). Any earlier reset is the relay's doing, and fails.
            waited = time.monotonic() - opened
            assert waited >= DAPHNE_PING_INTERVAL_S + DAPHNE_PING_TIMEOUT_S, (
                f"the visitor was reset after {waited:.1f} s, before Daphne's keep-alive"
            )
    finally:
        for flood in floods:
            flood.stop.set()
        for visitor, app in pairs:
            visitor.sock.close()
            app.sock.close()


# --- F7: a chunked upload of 1-byte chunks --------------------------------------------------
def test_an_upload_of_tiny_chunks_is_refused_with_a_message_and_the_relay_stays_responsive(
    default_relay, fake_client_factory
):
    relay = default_relay
    tunnel = fake_client_factory(relay)
    tunnel.connect(1)
    block = b"1\r\na\r\n" * 100_000
    answer = b""
    with HealthProbe(relay.port) as probe:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
            sock.sendall(
                f"POST / HTTP/1.1\r\nHost: {relay.host(tunnel.name)}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            try:
                for _ in range(20):  # 12 MB on the wire, 2 million chunks
                    sock.sendall(block)
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused: the relay closed the connection
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        wait_until(lambda: len(probe.latencies) >= 3 or probe.failure, 30, "three probes")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"chunks too small" in answer and b"Content-Length" in answer, answer
    probe.check()


@pytest.mark.parametrize("size", [64, 4096])
def test_an_upload_in_small_but_reasonable_chunks_arrives_whole(
    default_relay, fake_client_factory, size
):
    relay = default_relay
    tunnel = fake_client_factory(relay)
    (pool,) = tunnel.connect(1)
    body = bytes(i % 251 for i in range(size * 3000))
    framed = b"".join(
        b"%x\r\n" % len(body[i : i + size]) + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    )
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: {relay.host(tunnel.name)}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + framed
            + b"0\r\n\r\n"
        )
        request = pool.read_request()
        pool.respond(200, b"got it")
        answer = sock.recv(65536)
    assert request.body == body
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
