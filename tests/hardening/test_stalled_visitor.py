"""A visitor who stops reading must not hold a tunnel's pool socket.

Twisted switches its idle timeout off while a response is being sent, and the relay stops
reading the pool socket when the visitor's buffer is full, so without a deadline one visitor
with a zero TCP window would pin the socket for ever (ten of them would starve a tunnel).
Waiting for the visitor has the response deadline; then the stream is cut and the pool
socket freed.
"""

from __future__ import annotations

import socket
import threading

from harness.fake_client import FakeTunnelClient

BODY_BYTES = 64 * 1024 * 1024  # far beyond every socket buffer on the way


def test_a_visitor_who_stops_reading_frees_the_socket_after_the_deadline(
    module_relay_factory, wait_until
):
    relay = module_relay_factory(RELAY_RESPONSE_TIMEOUT_S=1)
    client = FakeTunnelClient(relay)
    visitor = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    try:
        (pool,) = client.connect(1)
        visitor.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        visitor.sendall(f"GET /big HTTP/1.1\r\nHost: {relay.host(client.name)}\r\n\r\n".encode())
        pool.read_request()
        outcome: dict[str, object] = {}

        def answer_with_a_huge_body() -> None:
            try:
                pool.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY_BYTES)
                pool.send(b"x" * BODY_BYTES)  # blocks once every buffer on the way is full
                outcome["result"] = "sent it all"
            except OSError as exc:  # the relay gave up on the visitor and closed the socket
                outcome["result"] = type(exc).__name__

        sender = threading.Thread(target=answer_with_a_huge_body, daemon=True)
        sender.start()
        # The visitor reads nothing. Within the deadline (plus slack) the relay cuts it.
        sender.join(timeout=15)
        assert not sender.is_alive(), "the relay still holds the pool socket for the visitor"
        assert outcome["result"] in ("BrokenPipeError", "ConnectionResetError")
        relay.wait_for_sockets(client.name, 0)

        (fresh,) = client.connect(1)
        answer = {}

        def visit() -> None:
            answer["status"] = relay.get("/after", name=client.name).status

        visiting = threading.Thread(target=visit, daemon=True)
        visiting.start()
        fresh.read_request()
        fresh.respond(200, b"served")
        visiting.join(timeout=10)
        assert answer == {"status": 200}
    finally:
        visitor.close()
        client.close()
