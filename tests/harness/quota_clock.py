"""Account quotas count in wall-clock windows (the UTC minute): a test that spends a minute's
requests waits, with a deadline, until enough of the minute is left for it."""

from __future__ import annotations

import time

from harness.waiting import wait_until

MINUTE_S = 60.0


def seconds_left_in_minute() -> float:
    return MINUTE_S - time.time() % MINUTE_S


def fresh_minute(need_s: float = 20.0) -> None:
    """Return once at least `need_s` seconds of the current UTC minute are left."""
    wait_until(lambda: seconds_left_in_minute() >= need_s, MINUTE_S, "a fresh minute")
