"""lt's `limit reached:` line comes once per limit and window (client limit_lines.py), fed
the relay's own texts (relay/pool/quota.py) as lt's status poll gets them every LIMIT_POLL_S:
the text counts down ("in 19 s"), and printing on every change once said a daily limit about
once a minute (12 lines in 12 minutes) and a per-minute one every poll."""

from __future__ import annotations

from relay.pool.quota import Quota
from relay.protocol import DAY_S, MINUTE_S
from tunnelsite_client.limit_lines import LimitLines
from tunnelsite_client.limits import LIMIT_POLL_S

QUOTA = Quota(per_minute=600, per_day_bytes=1_000_000, max_body_bytes=0, idle_timeout_s=0)
NOON = 20_000 * DAY_S + 12 * 3600  # a UTC noon


def polls(start: float, seconds: float) -> list[float]:
    return [start + i * LIMIT_POLL_S for i in range(int(seconds // LIMIT_POLL_S))]


def printed(answers: list[str | None]) -> list[str]:
    lines = LimitLines()
    return [line for line in map(lines.line, answers) if line is not None]


def test_a_daily_limit_reached_for_12_minutes_is_one_line() -> None:
    answers = [QUOTA.day_refusal(wall)[1] for wall in polls(NOON, 12 * MINUTE_S)]
    assert len(set(answers)) > 1  # it counts down: each minute's text differs
    assert printed(answers) == [f"limit reached: {answers[0]}"]


def test_a_per_minute_limit_is_one_line_in_each_minute_it_is_reached() -> None:
    answers = [QUOTA.minute_refusal(wall)[1] for wall in polls(NOON, 3 * MINUTE_S)]
    assert len(set(answers)) == len(answers)  # every poll's text differs
    lines = printed(answers)
    assert len(lines) == 3 and "12:01:00 UTC" in lines[0] and "12:03:00 UTC" in lines[2]


def test_a_limit_is_said_again_once_an_answer_said_none_is_reached() -> None:
    day = [QUOTA.day_refusal(wall)[1] for wall in polls(NOON, MINUTE_S)]
    next_day = [QUOTA.day_refusal(wall)[1] for wall in polls(NOON + DAY_S, MINUTE_S)]
    assert len(printed([*day, "", *next_day])) == 2


def test_an_unanswered_poll_changes_nothing() -> None:
    minute = [QUOTA.minute_refusal(wall)[1] for wall in polls(NOON, 30)]
    assert len(printed([minute[0], None, None, minute[1], minute[2]])) == 1
