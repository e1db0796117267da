"""Retry delays: exponential with jitter, first retry fast, capped."""

from __future__ import annotations

import random

from .limits import FIRST_DELAY_S, MAX_BACKOFF_DOUBLINGS, MAX_DELAY_S

__all__ = ["FIRST_DELAY_S", "MAX_DELAY_S", "delay_for"]


def delay_for(attempt: int, rng: random.Random | None = None) -> float:
    """The wait before retry number `attempt` (0-based): uniform in [base, 2*base], where
    base doubles from FIRST_DELAY_S; never above MAX_DELAY_S."""
    base = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** min(attempt, MAX_BACKOFF_DOUBLINGS))
    return min(MAX_DELAY_S, (rng or random).uniform(base, 2 * base))
