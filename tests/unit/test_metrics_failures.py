"""The bare domain's /metrics holds back an address that keeps sending wrong tokens
(tunnels/metrics_view.Failures, sans-IO: told the time)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from relay.protocol import (
    METRICS_FAILURE_ADDRESSES_KEPT,
    METRICS_FAILURE_WINDOW_S,
    METRICS_FAILURES_PER_ADDRESS,
)
from tunnels.metrics_view import Failures


def test_the_defaults_hold_an_address_back_after_its_share_until_the_window_ends() -> None:
    failures = Failures()
    for _ in range(METRICS_FAILURES_PER_ADDRESS):
        assert failures.held("203.0.113.9", 100.0) == 0.0
        failures.failed("203.0.113.9", 100.0)
    assert failures.held("203.0.113.9", 130.0) == METRICS_FAILURE_WINDOW_S - 30.0
    assert failures.held("198.51.100.1", 130.0) == 0.0  # another address is not held
    assert failures.held("203.0.113.9", 100.0 + METRICS_FAILURE_WINDOW_S) == 0.0


def test_a_full_table_never_holds_back_an_address_that_never_failed() -> None:
    failures = Failures(per_address=1, kept=METRICS_FAILURE_ADDRESSES_KEPT)
    for i in range(METRICS_FAILURE_ADDRESSES_KEPT + 50):
        failures.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 5.0)
    assert len(failures.by_address) == METRICS_FAILURE_ADDRESSES_KEPT
    assert failures.held("192.168.7.7", 5.0) == 0.0  # the scraper


events = st.lists(st.tuples(st.sampled_from("abcd"), st.floats(0, 90), st.booleans()), max_size=200)


@given(events, st.integers(1, 5), st.integers(1, 3))
# What hypothesis found once: a wait a hair over 60 s, and a window that ended by rounding.
@example(
    [
        ("a", 1.5655691793639903, False),
        ("a", 1.4427742118781772, False),
        ("a", 1.4427742118781772, False),
        ("a", 12.35289437569033, False),
        ("a", 89.34762912767411, False),
        ("a", 90.0, True),
        ("a", 0.0, False),
    ],
    1,
    1,
)
@example([("a", 1.3528943756903296, False), ("a", 67.0, True), ("a", 60.0, False)], 1, 1)
def test_held_exactly_when_the_window_saw_the_share(
    steps: list[tuple[str, float, bool]], share: int, kept: int
) -> None:
    """Against a model: an address is held iff it failed `share` times since the window began
    (a window starts at the first event after the last one ended and lasts 60 s), the wait
    is within (0, 60], and the table stays bounded (float times included)."""
    failures = Failures(per_address=share, window_s=60.0, kept=kept)
    now, end, counts = 0.0, float("-inf"), {}
    for address, advance, fail in steps:
        now += advance
        if now >= end:
            end, counts = now + 60.0, {}
        wait = failures.held(address, now)
        assert (wait > 0) == (counts.get(address, 0) >= share)
        assert wait == 0.0 or 0.0 < wait <= 60.0
        if fail and not wait:
            failures.failed(address, now)
            if address in counts or len(counts) < kept:
                counts[address] = counts.get(address, 0) + 1
        assert len(failures.by_address) <= kept
