"""The counters count each event once and never go down, on a real relay: a download cut by
its tunnel's close keeps its bytes, a registration refused after its tunnel was made is no
closed tunnel, and a reclaim under another plan leaves the old plan's counters where they
were (review findings 3 and 4 of issue 16)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from harness.accounts import bearer
from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.prometheus import TOKEN, scrape, series, value
from harness.relay import Relay, manage
from harness.tcp_tunnels import make_plan_user
from harness.waiting import IO_TIMEOUT_S, unique_name

from relay.protocol import CLIENT_ID_HEADER

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


_HELD_ELSEWHERE = """
from tunnels.models import TunnelSession
TunnelSession.objects.create(subdomain={name!r}, client_ip="10.0.0.9", port=1, max_sockets=1)
"""


def test_a_registration_refused_after_its_tunnel_was_made_is_no_closed_tunnel(
    relay_factory: Callable[..., Relay],
) -> None:
    """A live session row of the name the relay does not hold (another relay's, on the
    same database): the registry makes the Tunnel, claims the name, then the row's insert
    is refused (409). That Tunnel never opened, so no tunnel closed, in no plan."""
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    name = unique_name("held")
    manage(relay, "shell", "-c", _HELD_ELSEWHERE.format(name=name))
    before = scrape(relay)
    refused = relay.register(name)
    assert refused.status == 409, refused
    after = scrape(relay)
    assert value(after, "tunnelsite_tunnels_closed_total") == value(
        before, "tunnelsite_tunnels_closed_total"
    )
    assert {labels["plan"] for labels in series(after, "tunnelsite_tunnels_closed_total")} <= {
        "default"
    }, "a plan's row with no plan: the refused registration's Tunnel counted as closed"
    assert (
        value(after, "tunnelsite_registrations_total", outcome="409")
        - value(before, "tunnelsite_registrations_total", outcome="409")
        == 1
    )
    assert (
        value(after, "tunnelsite_registrations_total")
        - value(before, "tunnelsite_registrations_total")
        == 1
    )


_MOVE_TO_PLAN = """
from tunnels.models import Account, Plan
plan = Plan.objects.create(name={plan!r})
Account.objects.filter(user__username={username!r}).update(plan=plan)
"""


def test_a_reclaim_under_another_plan_leaves_the_old_plans_counters(
    relay_factory: Callable[..., Relay],
) -> None:
    """The operator moves a user to another plan while its tunnel is live; our lt
    reconnecting registers the name again under the new plan: what the tunnel carried
    stays on the plan it opened under (the old plan's counters never go down), the
    registration counts once, and the tunnel keeps that plan until it closes."""
    relay = relay_factory(RELAY_METRICS_TOKEN=TOKEN)
    token = make_plan_user(relay.env, "mover")
    old, new = {"plan": "mover plan"}, {"plan": "mover other plan"}
    headers = [*bearer(token).items(), (CLIENT_ID_HEADER, "mover-client-1")]
    client = FakeTunnelClient(relay, headers=headers)
    try:
        (pool,) = client.connect(1)
        for _ in range(2):
            with relay.visitor(client.name) as visitor:
                visitor.send(build_request("GET", "/", relay.host(client.name)))
                pool.read_request()
                pool.respond(200, b"carried")
                assert visitor.response().status == 200
        scrapes = [scrape(relay)]
        assert value(scrapes[0], "tunnelsite_requests_total", **old) == 2
        manage(relay, "shell", "-c", _MOVE_TO_PLAN.format(plan=new["plan"], username="mover"))
        again = relay.get(f"/{client.name}", headers=headers, source=client.source)
        assert again.status == 200 and again.json()["id"] == client.name, again
        scrapes.extend(scrape(relay) for _ in range(2))
    finally:
        client.close()
    never_down(scrapes, **old)
    last = scrapes[-1]
    assert value(last, "tunnelsite_requests_total", **old) == 2
    assert value(last, "tunnelsite_bytes_out_total", **old) == value(
        scrapes[0], "tunnelsite_bytes_out_total", **old
    )
    assert value(last, "tunnelsite_tunnels", **old) == 1, "the reclaimed tunnel keeps its plan"
    assert value(last, "tunnelsite_requests_total", **new) == 0
    assert (
        value(last, "tunnelsite_registrations_total", outcome="ok")
        - value(scrapes[0], "tunnelsite_registrations_total", outcome="ok")
        == 1
    )
