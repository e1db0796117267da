"""Each live owned tunnel's own last hour (relay/traffic.py), sampled with the relay's
traffic: only minutes with traffic, bounded by live owned tunnels x HISTORY_MINUTES and
dropped when the tunnel closes; none for anonymous tunnels."""

from __future__ import annotations

from relay.protocol import HISTORY_MINUTES
from relay.traffic import Counts, Traffic


class FakeTunnel:
    """What the sampler reads of a tunnel: its counters and owner (hashed by identity, like
    Tunnel)."""

    def __init__(self, user_id: int | None = 7) -> None:
        self.requests = self.bytes_in = self.bytes_out = 0
        self.user_id = user_id


def test_each_tunnel_gets_its_own_minutes():
    traffic, one, two = Traffic(), FakeTunnel(), FakeTunnel()
    start = 600_000.0
    traffic.sample([one, two], start)  # type: ignore[list-item]
    one.requests, one.bytes_in, one.bytes_out = 3, 300, 3000
    two.requests = 1
    traffic.sample([one, two], start + 1)  # type: ignore[list-item]
    one.requests = 5
    traffic.sample([one, two], start + 61)  # type: ignore[list-item]
    hour = traffic.tunnel_history(one, start + 61)  # type: ignore[arg-type]
    assert len(hour) == HISTORY_MINUTES
    assert [m.counts for m in hour[-2:]] == [Counts(3, 300, 3000), Counts(2, 0, 0)]
    assert traffic.tunnel_history(two, start + 61)[-2].counts == Counts(1, 0, 0)  # type: ignore[arg-type]
    assert traffic.history(start + 61)[-2].counts == Counts(4, 300, 3000)


def test_a_closed_tunnels_history_is_dropped_at_the_next_sample():
    traffic, one, two = Traffic(), FakeTunnel(), FakeTunnel()
    traffic.sample([one, two], 0.0)  # type: ignore[list-item]
    one.requests = two.requests = 9
    traffic.sample([one, two], 1.0)  # type: ignore[list-item]
    assert traffic.tunnels_kept == 2
    traffic.sample([two], 2.0)  # type: ignore[list-item]
    assert traffic.tunnels_kept == 1
    assert all(m.counts == Counts() for m in traffic.tunnel_history(one, 2.0))  # type: ignore[arg-type]


def test_a_tunnel_keeps_at_most_an_hour_of_minutes():
    traffic, one = Traffic(), FakeTunnel()
    for minute in range(3 * HISTORY_MINUTES):
        one.requests += 1
        traffic.sample([one], minute * 60.0)  # type: ignore[list-item]
    kept = traffic._per_tunnel[one]  # type: ignore[index]
    assert len(kept) == HISTORY_MINUTES
    assert kept.maxlen == HISTORY_MINUTES


def test_the_history_handed_out_is_a_copy():
    traffic, one = Traffic(), FakeTunnel()
    one.requests = 1
    traffic.sample([one], 60.0)  # type: ignore[list-item]
    traffic.tunnel_history(one, 60.0)[-1].counts = Counts(99, 0, 0)  # type: ignore[arg-type]
    assert traffic.tunnel_history(one, 60.0)[-1].counts == Counts(1, 0, 0)  # type: ignore[arg-type]


def test_an_anonymous_tunnel_keeps_no_minutes_it_has_no_account_page():
    traffic, anonymous = Traffic(), FakeTunnel(user_id=None)
    anonymous.requests = 4
    traffic.sample([anonymous], 60.0)  # type: ignore[list-item]
    assert traffic.tunnels_kept == 0
    assert traffic.history(60.0)[-1].counts == Counts(4, 0, 0)  # the relay's totals count it


def test_an_idle_owned_tunnel_keeps_nothing_for_its_idle_minutes():
    traffic, one = Traffic(), FakeTunnel()
    for minute in range(5):
        traffic.sample([one], minute * 60.0)  # type: ignore[list-item]
    assert traffic.tunnels_kept == 0
    one.requests = 1
    traffic.sample([one], 5 * 60.0)  # type: ignore[list-item]
    for minute in range(6, 10):
        traffic.sample([one], minute * 60.0)  # type: ignore[list-item]
    kept = traffic._per_tunnel[one]  # type: ignore[index]
    assert [m.start for m in kept] == [5 * 60]  # one minute with traffic, none idle
    hour = traffic.tunnel_history(one, 9 * 60.0)  # type: ignore[arg-type]
    assert [m.counts.requests for m in hour[-5:]] == [1, 0, 0, 0, 0]  # the reader fills zeros
