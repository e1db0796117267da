"""The counters count each event once and never go down, on a real relay: a download cut by
its tunnel's close keeps its bytes (review finding 4 of issue 16)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.prometheus import TOKEN, scrape, value
from harness.relay import Relay
from harness.waiting import IO_TIMEOUT_S

COUNTERS = (
    "tunnelsite_requests_total",
    "tunnelsite_bytes_in_total",
    "tunnelsite_bytes_out_total",
    "tunnelsite_tunnels_closed_total",
)
PLAN = {"plan": "default", "node": ""}
SENT = 300_000  # of the download's 1,000,000 bytes, sent before the tunnel closes


def never_down(scrapes: list[str], **labels: str) -> None:
    for name in COUNTERS:
        values = [value(text, name, **labels) for text in scrapes]
        assert values == sorted(values), f"{name} went down between scrapes: {values}"


def read_at_least(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        piece = sock.recv(262144)
        assert piece, f"the relay closed the visitor's connection after {len(data)} bytes"
        data += piece
    return data


def read_to_end(sock: socket.socket, deadline: float) -> None:
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            if not sock.recv(262144):
                return
        except ConnectionResetError:
            return


def test_a_download_cut_by_the_tunnels_close_keeps_its_bytes_in_the_totals(
    relay_factory: Callable[..., Relay],
    fake_client_factory: Callable[..., FakeTunnelClient],
) -> None:
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    client = fake_client_factory(relay)
    (pool,) = client.connect(1)
    scrapes = [scrape(relay)]
    deadline = time.monotonic() + IO_TIMEOUT_S
    with relay.visitor(client.name) as visitor:
        visitor.send(build_request("GET", "/big", relay.host(client.name)))
        pool.read_request()
        pool.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * SENT)
        head_and_body = read_at_least(visitor.sock, SENT, deadline)
        head, _, body = head_and_body.partition(b"\r\n\r\n")
        while len(body) < SENT:  # the head's bytes were counted above
            body += read_at_least(visitor.sock, SENT - len(body), deadline)
        scrapes.append(scrape(relay))  # the download in flight
        closed = relay.request("DELETE", f"/api/tunnels/{client.name}", source=client.source)
        assert closed.status == 204, closed
        read_to_end(visitor.sock, deadline)  # the relay cuts the visitor: the exchange ended
    scrapes.extend(scrape(relay) for _ in range(4))
    never_down(scrapes, **PLAN)
    first, last = scrapes[0], scrapes[-1]
    for later in scrapes[2:]:  # after the close, every scrape says the same
        for name in COUNTERS:
            assert value(later, name, **PLAN) == value(last, name, **PLAN), name
    assert (
        value(last, "tunnelsite_requests_total", **PLAN)
        - value(first, "tunnelsite_requests_total", **PLAN)
        == 1
    )
    assert (
        value(last, "tunnelsite_tunnels_closed_total", **PLAN)
        - value(first, "tunnelsite_tunnels_closed_total", **PLAN)
        == 1
    )
    carried = value(last, "tunnelsite_bytes_out_total", **PLAN) - value(
        first, "tunnelsite_bytes_out_total", **PLAN
    )
    assert carried >= SENT, f"the download's {SENT} bytes, not {carried}, after the close"
