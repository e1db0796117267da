"""relay/pool/bandwidth.py: the plan's bandwidth as sans-IO buckets, fed sizes and times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.pool.bandwidth import Bucket, Table, burst_for
from relay.protocol import BANDWIDTH_DUST_BYTES, BANDWIDTH_MIN_BURST_BYTES

RATES = st.integers(min_value=1_000, max_value=50_000_000)
PIECES = st.lists(
    st.tuples(st.integers(min_value=1, max_value=4_000_000), st.floats(0.0, 3.0)),
    min_size=1,
    max_size=60,
)


def run(bucket: Bucket, pieces: list[tuple[int, float]]) -> list[tuple[float, float, int]]:
    """A copier that waits each delay it is given: (taken at, passed on at, size) per piece,
    the next piece offered `gap` seconds after the one before was passed on."""
    now = 0.0
    log = []
    for size, gap in pieces:
        delay = bucket.take(size, now)
        assert delay >= 0.0
        log.append((now, now + delay, size))
        now += delay + gap
    return log


@given(RATES, PIECES)
def test_it_never_passes_more_than_rate_times_time_plus_burst(
    rate: int, pieces: list[tuple[int, float]]
) -> None:
    bucket = Bucket(rate, 0.0)
    log = run(bucket, pieces)
    # Over any interval [a, b], the pieces taken in it and passed on by its end.
    for i, (a, _, _) in enumerate(log):
        total = 0
        for taken, passed, size in log[i:]:
            total += size
            b = passed
            assert taken >= a
            assert total <= rate * (b - a) + bucket.burst + BANDWIDTH_DUST_BYTES + 1e-9 * total


@given(RATES, st.lists(PIECES, min_size=2, max_size=4))
def test_copiers_sharing_a_bucket_together_stay_within_it(
    rate: int, copiers: list[list[tuple[int, float]]]
) -> None:
    """Several copiers of one owner (tunnels, directions' streams), each waiting its own
    delays, interleaved in time order: all their pieces together obey the one bound."""
    bucket = Bucket(rate, 0.0)
    ready = [(0.0, index, 0) for index in range(len(copiers))]  # (when, copier, next piece)
    log = []
    while ready:
        ready.sort()
        now, index, piece = ready.pop(0)
        size, gap = copiers[index][piece]
        delay = bucket.take(size, now)
        log.append((now, now + delay, size))
        if piece + 1 < len(copiers[index]):
            ready.append((now + delay + gap, index, piece + 1))
    log.sort()
    for i, (a, _, _) in enumerate(log):
        for b in {passed for _, passed, _ in log[i:]}:
            total = sum(size for taken, passed, size in log[i:] if passed <= b)
            assert total <= rate * (b - a) + bucket.burst + BANDWIDTH_DUST_BYTES + 1e-9 * total


@given(RATES, st.lists(st.floats(0.0, 2.0), min_size=1, max_size=60))
def test_it_never_waits_a_copier_that_stays_under_the_rate(rate: int, gaps: list[float]) -> None:
    """Pieces no larger than what the rate refilled since the last one, nor than the burst
    (the first: the burst itself), pass at once."""
    bucket = Bucket(rate, 0.0)
    now = 0.0
    assert bucket.take(int(bucket.burst), now) == 0.0
    for gap in gaps:
        now += gap
        assert bucket.take(min(int(rate * gap), int(bucket.burst)), now) == 0.0


def test_a_large_piece_is_taken_whole_and_waits_its_debt() -> None:
    bucket = Bucket(1_000_000, 0.0)  # burst: one second's worth
    assert bucket.take(1_000_000, 0.0) == 0.0
    delay = bucket.take(10_000_000, 0.0)  # ten seconds' worth at once: waits ten seconds
    assert abs(delay - 10.0) < 1e-9
    assert abs(bucket.take(1, 10.0) - 1e-6) < 1e-9  # then the next byte is a byte's wait


def test_two_copiers_of_one_owner_share_the_rate() -> None:
    bucket = Bucket(1_000_000, 0.0)
    bucket.take(int(bucket.burst), 0.0)
    first = bucket.take(500_000, 0.0)
    second = bucket.take(500_000, 0.0)
    assert abs(first - 0.5) < 1e-9 and abs(second - 1.0) < 1e-9


def test_the_burst_is_a_second_of_the_rate_and_never_less_than_a_body_piece() -> None:
    assert burst_for(10_000_000) == 10_000_000
    assert burst_for(1_000) == BANDWIDTH_MIN_BURST_BYTES


def test_an_owner_has_one_shaper_while_it_has_tunnels_and_none_after() -> None:
    table = Table()
    assert table.join("user:1", 0, 0.0) is None  # no limit: nothing kept
    first = table.join("user:1", 1_000_000, 0.0)
    second = table.join("user:1", 1_000_000, 1.0)
    other = table.join("ip:10.0.0.1", 1_000_000, 1.0)
    assert first is not None and first is second and other is not first
    table.leave(first)
    assert "user:1" in table.owners
    table.leave(second)  # type: ignore[arg-type]
    assert "user:1" not in table.owners and list(table.owners) == ["ip:10.0.0.1"]


def test_a_registration_under_another_rate_sets_it_for_the_owner() -> None:
    table = Table()
    shaper = table.join("user:1", 1_000_000, 0.0)
    assert shaper is not None
    assert table.join("user:1", 2_000_000, 0.0) is shaper
    assert shaper.rate == 2_000_000 and shaper.up.rate == 2_000_000
