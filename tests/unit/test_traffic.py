"""The traffic sampler: totals only grow, rates per second, an hour of minutes in a ring."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from harness.waiting import wait_until_async
from hypothesis import given
from hypothesis import strategies as st

from relay import traffic
from relay.traffic import HISTORY_MINUTES, Counts, Traffic

T0 = 1_800_000_000.0  # a Unix time on a minute boundary
assert T0 % 60 == 0


@dataclass(eq=False)
class FakeTunnel:
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    user_id: int | None = None


@dataclass
class FakeRegistry:
    tunnels: dict[str, Any] = field(default_factory=dict)


def test_a_sample_adds_only_what_grew_since_the_previous_one() -> None:
    seen = Traffic()
    tunnel = FakeTunnel(requests=2, bytes_in=100, bytes_out=1000)
    assert seen.sample([tunnel], T0) == Counts(2, 100, 1000)
    tunnel.requests, tunnel.bytes_out = 5, 1500
    assert seen.sample([tunnel], T0 + 1) == Counts(3, 0, 500)
    assert seen.total == Counts(5, 100, 1500)


def test_a_closed_tunnel_leaves_the_totals_as_they_were() -> None:
    seen = Traffic()
    leaving, staying = FakeTunnel(10, 10, 10), FakeTunnel(1, 1, 1)
    seen.sample([leaving, staying], T0)
    staying.requests = 2
    assert seen.sample([staying], T0 + 1) == Counts(1, 0, 0)
    assert seen.total == Counts(12, 11, 11)


def test_a_new_tunnel_counts_from_zero() -> None:
    seen = Traffic()
    seen.sample([], T0)
    assert seen.sample([FakeTunnel(3, 30, 300)], T0 + 1) == Counts(3, 30, 300)


def test_rates_are_per_second_between_the_oldest_and_newest_recent_samples() -> None:
    seen = Traffic()
    tunnel = FakeTunnel()
    assert seen.rates().requests_per_s == 0.0
    for second in range(4):
        tunnel.requests += 10
        tunnel.bytes_in += 1000
        tunnel.bytes_out += 4000
        seen.sample([tunnel], T0 + second)
    rates = seen.rates()
    assert (rates.requests_per_s, rates.bytes_in_per_s, rates.bytes_out_per_s) == (
        10.0,
        1000.0,
        4000.0,
    )


def test_rates_forget_samples_older_than_the_window() -> None:
    seen = Traffic()
    tunnel = FakeTunnel(requests=1_000_000)
    seen.sample([tunnel], T0)  # a burst long ago
    for second in range(1, 30):
        tunnel.requests += 2
        seen.sample([tunnel], T0 + second)
    assert seen.rates().requests_per_s == 2.0


def test_traffic_lands_in_the_minute_it_was_sampled_in() -> None:
    seen = Traffic()
    tunnel = FakeTunnel()
    tunnel.requests = 4
    seen.sample([tunnel], T0 + 10)
    tunnel.requests = 7
    seen.sample([tunnel], T0 + 70)
    history = seen.history(T0 + 70)
    assert len(history) == HISTORY_MINUTES
    assert [m.counts.requests for m in history[-2:]] == [4, 3]
    assert history[-1].start == T0 + 60
    assert history[0].start == T0 + 60 - 59 * 60


def test_minutes_without_samples_count_zero() -> None:
    seen = Traffic()
    tunnel = FakeTunnel(requests=1)
    seen.sample([tunnel], T0)
    tunnel.requests = 2
    seen.sample([tunnel], T0 + 5 * 60)  # the loop was busy for five minutes
    requests = [m.counts.requests for m in seen.history(T0 + 5 * 60)]
    assert requests[-6:] == [1, 0, 0, 0, 0, 1]


def test_the_ring_keeps_one_hour_and_drops_older_minutes() -> None:
    seen = Traffic()
    tunnel = FakeTunnel()
    for minute in range(90):
        tunnel.requests += minute
        seen.sample([tunnel], T0 + minute * 60)
    assert len(seen.minutes) == HISTORY_MINUTES
    history = seen.history(T0 + 89 * 60)
    assert [m.counts.requests for m in history] == list(range(30, 90))


def test_the_sampler_task_reads_the_registry_until_cancelled() -> None:
    async def scenario() -> Counts:
        registry = FakeRegistry({"app": FakeTunnel(requests=3, bytes_in=5, bytes_out=7)})
        seen = Traffic()
        task = asyncio.get_running_loop().create_task(
            traffic.run_sampler(registry, seen)  # type: ignore[arg-type]
        )
        try:
            await wait_until_async(lambda: seen.recent, 5, "the sampler's first sample")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert task.cancelled()
        return seen.total

    assert asyncio.run(scenario()) == Counts(3, 5, 7)


# The sampler against a model of it: per tunnel, what grew since it was last seen (a tunnel
# seen for the first time from zero), summed relay-wide and, for an owned tunnel, into its own
# minutes; a tunnel that closes takes its minutes with it. Steps: some tunnels open, some
# close, some carry traffic, then a sample a few seconds later.
step = st.tuples(
    st.lists(st.booleans(), max_size=2),  # tunnels opened: owned or not
    st.sets(st.integers(0, 7), max_size=3),  # indexes of live tunnels that close
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3), st.integers(0, 500)), max_size=6),
    st.integers(1, 90),  # seconds since the previous sample
)


@given(st.lists(step, min_size=1, max_size=25))
def test_the_sampler_counts_what_the_model_counts(steps: list[Any]) -> None:
    seen = Traffic()
    live: list[FakeTunnel] = []
    everyone: list[FakeTunnel] = []
    last: dict[int, tuple[int, int, int]] = {}  # the model: each tunnel's last sample
    minutes: dict[int, dict[int, list[int]]] = {}  # owned tunnels' minutes
    total = [0, 0, 0]
    now = T0
    for opened, closing, traffic_steps, seconds in steps:
        live = [t for i, t in enumerate(live) if i not in closing]
        live += [FakeTunnel(user_id=1 if owned else None) for owned in opened]
        everyone += live  # kept: no id() is reused
        for index, requests, size in traffic_steps:
            if index < len(live):
                live[index].requests += requests
                live[index].bytes_in += size
                live[index].bytes_out += 2 * size
        now += seconds
        added = [0, 0, 0]
        model_minutes = {}
        for tunnel in live:
            counts = (tunnel.requests, tunnel.bytes_in, tunnel.bytes_out)
            grown = [a - b for a, b in zip(counts, last.get(id(tunnel), (0, 0, 0)), strict=True)]
            last[id(tunnel)] = counts
            added = [a + g for a, g in zip(added, grown, strict=True)]
            if tunnel.user_id is not None:
                own = minutes.get(id(tunnel), {})
                if any(grown):
                    start = int(now // 60) * 60
                    own[start] = [
                        a + g for a, g in zip(own.get(start, [0, 0, 0]), grown, strict=True)
                    ]
                if own:
                    model_minutes[id(tunnel)] = own
        minutes = model_minutes
        total = [a + b for a, b in zip(total, added, strict=True)]

        assert seen.sample(live, now) == Counts(*added)
        assert seen.total == Counts(*total)
        for tunnel in live:
            history = {m.start: list(m.counts) for m in seen.tunnel_history(tunnel, now)}
            expected = minutes.get(id(tunnel), {})
            assert {k: v for k, v in history.items() if any(v)} == {
                k: v for k, v in expected.items() if k > now - HISTORY_MINUTES * 60 and any(v)
            }
