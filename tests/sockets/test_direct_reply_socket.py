"""relay/edge/reply.py's socket branch on a real relay: a response the visitor's socket cannot
take at once is sent in part straight to the socket and the rest queued by Twisted, in order,
and the connection goes on to the next request.

A visitor with a small receive buffer makes every large write partial; each body piece after
the first finds bytes queued before it and must queue behind them."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

from harness.fake_client import FakeTunnelClient

IO_TIMEOUT_S = 20
BODY_BYTES = 32 * 1024 * 1024  # well past the socket buffers on the way (up to 4 MiB each)
PIECE_BYTES = 256 * 1024  # the app sends it in pieces: the relay writes several pieces


def _read_response(visitor: socket.socket, buffered: bytearray) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response, reading 4 KiB at a time."""
    while b"\r\n\r\n" not in buffered:
        chunk = visitor.recv(4096)
        assert chunk, "the relay closed the connection mid-head"
        buffered += chunk
    end = buffered.index(b"\r\n\r\n") + 4
    head = bytes(buffered[:end])
    del buffered[:end]
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(buffered) < length:
        chunk = visitor.recv(4096)
        assert chunk, f"the relay closed the connection after {len(buffered)} of {length}"
        buffered += chunk
    body = bytes(buffered[:length])
    del buffered[:length]
    return head, body


def test_a_slow_visitor_gets_every_byte_in_order_then_the_next_response(module_relay_factory):
    relay = module_relay_factory()
    client = FakeTunnelClient(relay)
    pool, _spare = client.connect(2)
    body = os.urandom(BODY_BYTES)
    visitor = socket.create_connection(("127.0.0.1", relay.port), timeout=IO_TIMEOUT_S)
    visitor.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        host = relay.host(client.name)
        visitor.sendall(f"GET /big HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        pool, _ = client.next_request()
        failed: list[BaseException] = []

        def answer() -> None:
            try:
                pool.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES)
                for at in range(0, BODY_BYTES, PIECE_BYTES):
                    pool.send(body[at : at + PIECE_BYTES])
            except BaseException as exc:  # noqa: BLE001  (reported by the test's thread)
                failed.append(exc)

        sender = threading.Thread(target=answer, daemon=True)
        sender.start()
        buffered = bytearray()
        head, got = _read_response(visitor, buffered)
        sender.join(IO_TIMEOUT_S)
        assert not failed
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()

        # The same visitor connection goes on: the next exchange is whole. (The pool socket
        # may be another: a raw pipe's is not always reused, relay/pool/reuse.py.)
        visitor.sendall(f"GET /after HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        pool, request = client.next_request()
        assert request.target == "/after"
        pool.respond(200, b"next")
        head, got = _read_response(visitor, buffered)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and got == b"next"
        assert not buffered  # nothing more than the two responses
    finally:
        visitor.close()
        client.close()
