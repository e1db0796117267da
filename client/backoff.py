"""Retry delays: exponential with jitter, first retry fast, capped."""

from __future__ import annotations

import random

FIRST_DELAY_S = 0.5  # first retry after 0.5-1 s: a restarting relay is often back at once
MAX_DELAY_S = 30.0  # never wait longer than this between two attempts


def delay_for(attempt: int, rng: random.Random | None = None) -> float:
    """The wait before retry number `attempt` (0-based): uniform in [base, 2*base], where
    base doubles from FIRST_DELAY_S; never above MAX_DELAY_S."""
    base = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** min(attempt, 32))
    return min(MAX_DELAY_S, (rng or random).uniform(base, 2 * base))
