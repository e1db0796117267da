"""One visitor address cannot hold all of a tunnel's sockets, whatever its traffic.

The attack (issue 10 item 24, review F4): one address starts ten large downloads and reads
them slowly, fast enough that no response timeout fires. Each holds a pool socket for as
long as it lasts, so with ten sockets every other visitor waited RELAY_SOCKET_WAIT_S for a
504. Now one address holds at most all but RELAY_SPARE_SOCKETS of a tunnel's sockets;
its requests past that wait like any other, are served as soon as one of its own sockets
frees, and get a 504 saying why when none does. With the defaults, with both clients.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from harness.http import Visitor
from harness.relay import Relay
from harness.waiting import wait_until

from .appdata import GREETING

SLOW_READERS = 10  # as many as the tunnel has pool sockets
ATTACKER, OTHER = "127.0.0.6", "127.0.0.7"
DOWNLOAD = "/bytes/50000000"  # far more than the socket buffers on the way hold


@pytest.fixture(scope="module")
def share_relay(module_relay_factory) -> Relay:
    return module_relay_factory()  # the defaults are what is tested


@pytest.fixture(params=["npm lt", "our lt"])
def tunnel_name(request, share_relay, local_app, lt_factory, our_launcher) -> Iterator[str]:
    if request.param == "npm lt":
        client = lt_factory(share_relay, local_app.port)
        share_relay.wait_for_sockets(client.name, 10)
        yield client.name
        client.stop()
    else:
        ours = our_launcher(share_relay, local_app.port)
        share_relay.wait_for_sockets(ours.name, 10)
        yield ours.name
        ours.process.stop()


def slow_reader(relay: Relay, name: str) -> socket.socket:
    """A download from ATTACKER that reads nothing after its first bytes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((ATTACKER, 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", relay.port))
    sock.sendall(f"GET {DOWNLOAD} HTTP/1.1\r\nHost: {relay.host(name)}\r\n\r\n".encode())
    sock.setblocking(False)
    return sock


def started(sock: socket.socket) -> bytes:
    """The first bytes of the answer, or b"" while it has none."""
    try:
        return sock.recv(1024)
    except BlockingIOError:
        return b""


def test_one_address_with_slow_downloads_leaves_other_visitors_a_socket(share_relay, tunnel_name):
    readers = [slow_reader(share_relay, tunnel_name) for _ in range(SLOW_READERS)]
    try:
        first: dict[int, bytes] = {}

        def answered() -> int:
            for i, sock in enumerate(readers):
                if i not in first and (data := started(sock)):
                    first[i] = data
            return len(first)

        # 8 of the 10 sockets (10 - RELAY_SPARE_SOCKETS) go to the attacker's downloads.
        wait_until(lambda: answered() >= 8, message="the first downloads to start")
        assert all(data.startswith(b"HTTP/1.1 200") for data in first.values())

        began = time.monotonic()
        with Visitor(share_relay.port, share_relay.host(tunnel_name), OTHER, 30) as visitor:
            answer = visitor.request("GET", "/hello")
        waited = time.monotonic() - began

        assert (answer.status, answer.body) == (200, GREETING), answer.text
        assert waited < 3.0, f"another address waited {waited:.1f} s"
        assert answered() == 8, "one address holds more than all but the spare sockets"

        # The attacker's own waiting downloads are served as soon as one of its sockets frees.
        held = next(iter(first))
        readers[held].close()
        began = time.monotonic()
        wait_until(lambda: answered() == 9, message="a waiting download to get the freed place")
        assert time.monotonic() - began < 3.0
    finally:
        for sock in readers:
            sock.close()


def test_a_request_over_its_addresss_share_gets_504_saying_why(share_relay, tunnel_name):
    readers = [slow_reader(share_relay, tunnel_name) for _ in range(8)]
    try:
        begun: set[int] = set()

        def all_started() -> bool:
            begun.update(i for i, sock in enumerate(readers) if i not in begun and started(sock))
            return len(begun) == len(readers)

        wait_until(all_started, message="the downloads to start")
        with Visitor(share_relay.port, share_relay.host(tunnel_name), ATTACKER, 30) as visitor:
            answer = visitor.request("GET", "/hello", [("Accept", "application/json")])

        assert answer.status == 504, (answer.status, answer.headers, answer.body[:300])
        assert "This address holds too many" in answer.json()["message"]
        assert share_relay.get("/hello", name=tunnel_name, source=OTHER).status == 200
    finally:
        for sock in readers:
            sock.close()
