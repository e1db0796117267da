"""relay/pool/bandwidth.py: the plan's bandwidth as sans-IO buckets, fed sizes and times, and
the copiers' wait (`pace`, `wait`) on a real event loop's clock."""

from __future__ import annotations

import asyncio
import time

from harness.pool_listener import LoopRegistry
from harness.waiting import wait_until_async
from hypothesis import given
from hypothesis import strategies as st

from relay.pool import bandwidth
from relay.pool.bandwidth import Bucket, Table, burst_for, slice_for
from relay.pool.quota import Quota
from relay.pool.tunnel import Tunnel
from relay.protocol import (
    BANDWIDTH_DUST_BYTES,
    BANDWIDTH_MIN_BURST_BYTES,
    BANDWIDTH_MIN_BYTES_PER_SECOND,
    BANDWIDTH_STEP_S,
    TIMER_SLACK_S,
)
from relay.proxy.ws_bridge import wire_size

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


def stated_bound(rate: float, burst: float, seconds: float, first: int, total: int) -> float:
    """Bucket's docstring: rate * seconds + max(burst, the first piece), a byte of rounding."""
    return rate * seconds + max(burst, first) + BANDWIDTH_DUST_BYTES + 1e-9 * total


def check_passed(log: list[tuple[float, float, int]], rate: float, burst: float) -> None:
    """The bound over every interval of pass times [p_k, p_m]: what passed in it, in the
    order passed (the order taken, which the check also confirms)."""
    passed = sorted(log, key=lambda entry: (entry[1], entry[0]))
    assert [entry[0] for entry in passed] == sorted(entry[0] for entry in log)
    for k, (_, a, first) in enumerate(passed):
        total = 0
        for _, b, size in passed[k:]:
            total += size
            assert total <= stated_bound(rate, burst, b - a, first, total), (k, a, b, total)


@given(RATES, PIECES)
def test_what_passes_in_any_interval_stays_within_the_stated_bound(
    rate: int, pieces: list[tuple[int, float]]
) -> None:
    bucket = Bucket(rate, 0.0)
    check_passed(run(bucket, pieces), rate, bucket.burst)


def test_a_piece_larger_than_the_burst_passes_at_once_after_its_wait() -> None:
    """Why the bound is max(burst, first piece): rate * seconds + burst alone is wrong."""
    bucket = Bucket(1_000_000, 0.0)
    assert bucket.take(1_000_000, 0.0) == 0.0
    assert abs(bucket.take(3_000_000, 0.0) - 3.0) < 1e-9
    # in [3.0, 3.0] three million bytes pass: more than 0 s of the rate plus the burst
    assert 3_000_000 > 1_000_000 * 0.0 + bucket.burst
    assert 3_000_000 <= stated_bound(1_000_000, bucket.burst, 0.0, 3_000_000, 3_000_000)


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
    check_passed(log, rate, bucket.burst)


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


# --- the copiers' wait (bandwidth.pace / wait), on the loop's clock --------------------------
STEP_DEADLINE_S = BANDWIDTH_STEP_S + 0.2  # one step, and a loaded machine's timer slack


class Registry(LoopRegistry):
    def close(self, tunnel: Tunnel, reason: str) -> None:
        tunnel.close(reason)


def paced_tunnel(owner: str, rate: int) -> Tunnel:
    """A tunnel that joined the relay's table at `rate`, its bucket up emptied: the next
    piece waits its whole size at the rate."""
    tunnel = Tunnel(owner, owner, "127.0.0.1", 1, Registry())  # type: ignore[arg-type]
    tunnel.shaper = bandwidth.owners.join(owner, rate, time.monotonic())
    assert tunnel.shaper is not None
    tunnel.shaper.up.take(int(tunnel.shaper.up.burst), time.monotonic())
    return tunnel


async def started(tunnel: Tunnel, n: int) -> tuple[asyncio.Task[None], float]:
    """pace(n) up, running; returns when the copier waits."""
    task = asyncio.ensure_future(bandwidth.pace(tunnel, n, True))
    await wait_until_async(lambda: tunnel.pacing, STEP_DEADLINE_S, "the copier to wait")
    return task, time.monotonic()


async def ended_within(task: asyncio.Task[None], since: float, deadline_s: float) -> float:
    async with asyncio.timeout(deadline_s * 4):  # a hang fails here, not at the test's timeout
        await task
    return time.monotonic() - since


def test_a_wait_ends_within_a_step_when_its_tunnel_closes() -> None:
    """A body piece at the lowest rate waits 16 s; the tunnel closing lets it go at once
    (the copier's next write then fails), not after its debt."""

    async def scenario() -> None:
        tunnel = paced_tunnel("user:close-while-paced", BANDWIDTH_MIN_BYTES_PER_SECOND)
        task, since = await started(tunnel, 16 * BANDWIDTH_MIN_BYTES_PER_SECOND)
        tunnel.close("test")
        assert await ended_within(task, since, STEP_DEADLINE_S) <= STEP_DEADLINE_S
        assert tunnel.pacing == 0 and "user:close-while-paced" not in bandwidth.owners.owners

    asyncio.run(scenario())


def test_a_new_rate_applies_to_a_wait_under_way_and_a_limit_gone_ends_it() -> None:
    async def scenario() -> None:
        owner = "user:rate-while-paced"
        tunnel = paced_tunnel(owner, BANDWIDTH_MIN_BYTES_PER_SECOND)
        task, since = await started(tunnel, 8 * BANDWIDTH_MIN_BYTES_PER_SECOND)  # 8 s
        rate = 64 * BANDWIDTH_MIN_BYTES_PER_SECOND  # the debt left, about 8 s of the old
        tunnel.shaper = bandwidth.owners.rejoin(tunnel.shaper, owner, rate, time.monotonic())
        assert await ended_within(task, since, STEP_DEADLINE_S) <= STEP_DEADLINE_S  # 1/8 s
        task, since = await started(tunnel, 64 * rate)  # 64 s at the new rate
        tunnel.shaper = bandwidth.owners.rejoin(tunnel.shaper, owner, 0, time.monotonic())
        assert await ended_within(task, since, STEP_DEADLINE_S) <= STEP_DEADLINE_S
        assert tunnel.shaper is None and owner not in bandwidth.owners.owners
        tunnel.close("test")

    asyncio.run(scenario())


def test_a_wait_lasts_its_debt_at_the_rate() -> None:
    async def scenario() -> None:
        tunnel = paced_tunnel("user:steps", BANDWIDTH_MIN_BYTES_PER_SECOND)
        task, since = await started(tunnel, BANDWIDTH_MIN_BYTES_PER_SECOND)  # 1 s
        took = await ended_within(task, since, 1.0 + STEP_DEADLINE_S)
        assert 1.0 - TIMER_SLACK_S - STEP_DEADLINE_S <= took <= 1.0 + STEP_DEADLINE_S, took
        tunnel.close("test")

    asyncio.run(scenario())


def test_a_tunnel_whose_copier_waits_is_not_idle_and_is_active_when_the_wait_ends() -> None:
    async def scenario() -> None:
        tunnel = paced_tunnel("user:idle-while-paced", BANDWIDTH_MIN_BYTES_PER_SECOND)
        quota = tunnel.quota = Quota(0, 0, 0, idle_timeout_s=1)
        tunnel.last_activity = time.monotonic() - 10  # the request began long ago
        task, since = await started(tunnel, BANDWIDTH_MIN_BYTES_PER_SECOND // 2)
        assert tunnel.visitors_connected == 1
        assert not quota.check_idle(tunnel, time.monotonic() + 5) and not tunnel.closed
        quota.cancel_idle_timer()
        await ended_within(task, since, 1.0)
        assert tunnel.visitors_connected == 0
        assert tunnel.last_activity >= since  # the wait's end is activity
        assert not quota.check_idle(tunnel, time.monotonic()) and not tunnel.closed
        quota.cancel_idle_timer()
        tunnel.close("test")

    asyncio.run(scenario())


# --- the table: an owner's entry goes with its last tunnel, whatever the reclaims ------------
OPS = st.lists(
    st.tuples(
        st.sampled_from(["open", "reclaim", "close"]),
        st.integers(0, 5),  # which tunnel
        st.sampled_from(["user:1", "user:2"]),
        st.sampled_from([0, 1, BANDWIDTH_MIN_BYTES_PER_SECOND, 2_000_000, 3_000_000]),
    ),
    max_size=60,
)


@given(OPS)
def test_opening_reclaiming_and_closing_never_leaks_nor_double_counts_a_shaper(
    ops: list[tuple[str, int, str, int]],
) -> None:
    """relay.face's use: `join` at a registration, `rejoin` at a reclaim (any rate, the limit
    gained or lost), `leave` at a close. Each shaper counts the live tunnels holding it, the
    table holds an owner while one does, and it is empty once all closed."""
    table = Table()
    live: dict[int, tuple[str, bandwidth.Shaper | None]] = {}
    for op, index, owner, rate in ops:
        if op == "open" and index not in live:
            live[index] = (owner, table.join(owner, rate, 0.0))
        elif op == "reclaim" and index in live:
            owner, held = live[index]  # a reclaim is the same owner's
            live[index] = (owner, table.rejoin(held, owner, rate, 0.0))
            shaper = live[index][1]
            assert (
                shaper is None
                if rate == 0
                else shaper.rate == max(rate, BANDWIDTH_MIN_BYTES_PER_SECOND)
            )
        elif op == "close" and index in live:
            _, held = live.pop(index)
            if held is not None:
                table.leave(held)
        holders: dict[str, int] = {}
        for held_owner, held in live.values():
            if held is not None:
                assert table.owners[held_owner] is held  # one shaper per owner, the table's
                holders[held_owner] = holders.get(held_owner, 0) + 1
        assert {owner: shaper.tunnels for owner, shaper in table.owners.items()} == holders
    for _, held in live.values():
        if held is not None:
            table.leave(held)
    assert table.owners == {}


def test_a_plan_rate_below_the_minimum_is_paced_at_the_minimum_and_a_read_sliced() -> None:
    table = Table()
    shaper = table.join("user:1", 1, 0.0)
    assert shaper is not None and shaper.rate == BANDWIDTH_MIN_BYTES_PER_SECOND
    assert slice_for(BANDWIDTH_MIN_BYTES_PER_SECOND) == int(
        BANDWIDTH_MIN_BYTES_PER_SECOND * BANDWIDTH_STEP_S
    )


def test_a_websocket_message_counts_its_payloads_bytes_on_the_wire() -> None:
    assert wire_size("plain") == 5
    assert wire_size(chr(0x20AC) * 4) == 12  # UTF-8: three bytes each
    assert wire_size("é" + chr(0x1F600)) == 2 + 4
    assert wire_size(b"\xff" * 7) == 7
