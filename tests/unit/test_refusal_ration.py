"""Which refused registrations get a log line (tunnels/refusal_log.py's `Ration`): per window
at most so many per address and so many in all, every other refusal counted and reported by
the next line, and one looping client never hides another's refusals."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from relay.protocol import (
    REFUSAL_LINES_PER_ADDRESS,
    REFUSAL_LINES_PER_WINDOW,
    REFUSAL_LOG_WINDOW_S,
)
from tunnels.refusal_log import Ration

addresses = st.sampled_from([f"10.0.0.{n}" for n in range(REFUSAL_LINES_PER_WINDOW // 4)])
steps = st.lists(
    st.tuples(addresses, st.floats(min_value=0, max_value=REFUSAL_LOG_WINDOW_S / 7)),
    max_size=500,
)


@given(steps=steps)
def test_lines_per_address_and_per_window_stay_under_their_caps_and_none_goes_uncounted(steps):
    ration = Ration()
    now, window = 0.0, -1
    per_address: Counter[tuple[int, str]] = Counter()
    per_window: Counter[int] = Counter()
    reported = 0
    for address, pause in steps:
        now += pause
        left_out = ration.admit(address, now)
        window = int(ration.window_start * 1000)  # the window this refusal fell in
        if left_out is not None:
            per_address[window, address] += 1
            per_window[window] += 1
            reported += 1 + left_out
        assert len(ration.by_address) <= REFUSAL_LINES_PER_WINDOW
    assert max(per_address.values(), default=0) <= REFUSAL_LINES_PER_ADDRESS
    assert max(per_window.values(), default=0) <= REFUSAL_LINES_PER_WINDOW
    assert reported + ration.left_out == len(steps)


def test_a_looping_client_does_not_hide_another_clients_refusal():
    ration = Ration()
    logged = [ration.admit("10.0.0.1", 0.001 * n) for n in range(1000)]
    assert sum(x is not None for x in logged) == REFUSAL_LINES_PER_ADDRESS
    assert ration.admit("10.0.0.2", 1.5) == 1000 - REFUSAL_LINES_PER_ADDRESS
    assert ration.admit("10.0.0.1", REFUSAL_LOG_WINDOW_S + 1) == 0  # a new window
