"""A tunnel held byte by byte (tests/hardening): a visitor sends exact bytes to a tunnel
whose pool socket the test holds, so each test sees what reached the tunnel side."""

from __future__ import annotations

import select
import time
from dataclasses import dataclass

from harness.fake_client import FakeTunnelClient, PoolRequest, PoolSocket
from harness.http import Answer, Visitor
from harness.relay import Relay
from harness.waiting import IO_TIMEOUT_S


@dataclass
class Outcome:
    """What one raw request led to: the visitor's answer and what the tunnel received."""

    answer: Answer
    forwarded: PoolRequest | None
    # After an answer that closes the connection (`Connection: close`): every byte the
    # relay sent after it, until the close (None: the connection stays open).
    after: bytes | None = None


class RawTunnel:
    """A fake tunnel client with one pool socket, driven one exchange at a time."""

    def __init__(self, relay: Relay, client: FakeTunnelClient) -> None:
        self.relay = relay
        self.client = client
        self.name = client.name
        self.host = relay.host(client.name)

    def pool(self) -> PoolSocket:
        """The live pool socket, reopening one when the relay has discarded the last."""
        # The relay's own count first: it closes a raw pipe's socket after HEAD, 204, 304,
        # a 1xx or trailers, and after every answer once the app sent bytes past one (its
        # close may not have reached us yet).
        if not self.relay.sockets(self.name):
            return self.fresh_pool()
        for pool_socket in self.client.sockets:
            # An idle pool socket with something to read has been closed by the relay.
            readable, _, _ = select.select([pool_socket.sock], [], [], 0)
            if not pool_socket.eof and not readable:
                return pool_socket
        return self.fresh_pool()

    def fresh_pool(self) -> PoolSocket:
        """Close every pool socket, wait until the relay has seen that, open a new one."""
        self.client.close()
        self.relay.wait_for_sockets(self.name, 0)
        (pool_socket,) = self.client.connect(1)
        return pool_socket

    def send(self, raw: bytes, reply: bytes | None = None, method: str = "GET") -> Outcome:
        """Send `raw` as a visitor; if a request reaches the pool, answer it with `reply`."""
        pool_socket = self.pool()
        with Visitor(self.relay.port, timeout=IO_TIMEOUT_S) as visitor:
            visitor.send(raw)
            forwarded = None
            deadline = time.monotonic() + IO_TIMEOUT_S
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("neither the visitor nor the tunnel heard anything")
                ready, _, _ = select.select([visitor.sock, pool_socket.sock], [], [], left)
                if pool_socket.sock in ready:
                    forwarded = pool_socket.read_request()
                    pool_socket.send(reply or ok_reply(b"forwarded"))
                    break
                if visitor.sock in ready:
                    break
            answer = visitor.response(method)
            after = None
            if answer.complete and answer.header("connection") == "close":
                after = visitor.read_until_closed()
            outcome = Outcome(answer, forwarded, after)
        if forwarded is not None and forwarded.body:
            # The relay never reuses a pool socket after a request with a body (the app may
            # not have read it): wait for that close, so the next send picks a live socket.
            assert pool_socket.is_closed(), "the relay kept a pool socket after a body"
        return outcome

    def assert_nothing_was_forwarded(self, fresh: bool = False) -> None:
        """The next request the tunnel sees is a canary: nothing was left behind (on the
        same pool socket, or with `fresh` on a new one after the relay dropped the old)."""
        if fresh:
            self.fresh_pool()
        outcome = self.send(f"GET /canary HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        assert outcome.answer.status == 200
        assert outcome.forwarded is not None and outcome.forwarded.target == "/canary"
        assert outcome.forwarded.raw_head.startswith(b"GET /canary HTTP/1.1\r\n")


def ok_reply(body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
