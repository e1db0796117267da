"""Which WebSockets a tunnel admits: all of its sockets but the spare ones, and at most a few
per visitor address (relay/pool/tunnel.py `admit_websocket`; end to end in
tests/e2e/test_idle_websockets.py)."""

from __future__ import annotations

import pytest
from harness.pool_listener import LoopRegistry

from relay.pool.tunnel import NoSocket, Tunnel


def tunnel(max_conn_count: int = 10, sockets: int = 10) -> Tunnel:
    made = Tunnel("ws-admission", "ip:127.0.0.1", "127.0.0.1", max_conn_count, LoopRegistry())  # type: ignore[arg-type]
    made.connections = {object() for _ in range(sockets)}  # type: ignore[misc]
    return made


def admit_all(t: Tunnel, visitors: list[str], spare: int = 2, per_visitor: int = 4) -> list[int]:
    """The status each visitor's WebSocket gets: 101 when admitted, else the refusal's."""
    statuses = []
    for visitor in visitors:
        try:
            t.admit_websocket(visitor, spare, per_visitor)
            statuses.append(101)
        except NoSocket as exc:
            statuses.append(exc.status)
    return statuses


def test_websockets_leave_the_spare_sockets_to_plain_requests():
    t = tunnel()

    statuses = admit_all(t, [f"10.0.0.{i}" for i in range(10)])

    assert statuses == [101] * 8 + [503, 503]


def test_one_address_holds_at_most_its_share_and_others_still_get_in():
    t = tunnel()

    statuses = admit_all(t, ["10.0.0.1"] * 5 + ["10.0.0.2"])

    assert statuses == [101] * 4 + [503, 101]


def test_a_closed_websocket_frees_its_place():
    t = tunnel()
    admit_all(t, ["10.0.0.1"] * 4)

    t.websocket_closed("10.0.0.1")

    assert admit_all(t, ["10.0.0.1", "10.0.0.1"]) == [101, 503]
    for _ in range(4):
        t.websocket_closed("10.0.0.1")
    assert t.websockets is None  # nothing kept for a tunnel with no WebSocket open


def test_a_client_with_fewer_sockets_than_allowed_is_counted_by_what_it_opened():
    t = tunnel(max_conn_count=200, sockets=100)

    assert admit_all(t, [f"10.0.{i // 250}.{i % 250}" for i in range(99)]).count(101) == 98


@pytest.mark.parametrize(("max_conn_count", "sockets"), [(1, 1), (2, 2), (10, 0)])
def test_a_tunnel_with_few_sockets_still_carries_one_websocket(max_conn_count, sockets):
    t = tunnel(max_conn_count, sockets)

    statuses = admit_all(t, ["10.0.0.1", "10.0.0.2"])

    expected = [101, 503] if max_conn_count <= 2 else [101, 101]
    assert statuses == expected


def test_a_client_that_lost_sockets_for_good_keeps_its_spares_for_plain_requests():
    """An npm client loses a pool socket for good when its app closes a connection at once
    (tests/datapath/test_local_app_down.py): count what it holds now, not what it once did."""
    t = tunnel(sockets=10)
    t.peak_sockets = 10
    t.connections = set(list(t.connections)[:3])

    assert admit_all(t, [f"10.0.0.{i}" for i in range(3)]) == [101, 503, 503]


@pytest.mark.parametrize(("max_conn_count", "sockets"), [(10, 10), (200, 100), (10, 3), (1, 1)])
def test_a_visitors_share_and_the_websocket_cap_count_the_same_sockets(max_conn_count, sockets):
    """One rule (relay/pool/borrowing.py `sockets_beyond_spare`) for both: the sockets the
    client holds now, less the spare ones, at least one."""
    t = tunnel(max_conn_count, sockets)

    admitted = admit_all(t, [f"10.1.{i // 250}.{i % 250}" for i in range(250)]).count(101)

    assert admitted == t.share() == max(1, min(max_conn_count, sockets) - 2)
