"""Account usage in the database (tunnels/usage_rows.py, the records port's add_usage,
usage_of and prune_usage): batches add up per window, every node's together."""

from __future__ import annotations

from django.test import TestCase

from relay.records import UsageDelta
from tunnels.models import UsageWindow
from tunnels.records import OrmRecords

MINUTE = 1_699_999_980  # a UTC minute's first second
DAY = 1_699_920_000  # that minute's UTC day


def deltas(owner: str, requests: int, size: int) -> list[UsageDelta]:
    return [
        UsageDelta(owner, "minute", MINUTE, requests, 0),
        UsageDelta(owner, "day", DAY, requests, size),
    ]


class UsageRowsTests(TestCase):
    def setUp(self) -> None:
        self.records = OrmRecords()

    def test_two_nodes_batches_add_up_and_each_gets_the_total_back(self) -> None:
        first = self.records.add_usage(deltas("user:1", 3, 100))
        second = self.records.add_usage(deltas("user:1", 2, 50))  # another node's batch
        self.assertEqual(first[("user:1", "day", DAY)], (3, 100))
        self.assertEqual(second[("user:1", "minute", MINUTE)], (5, 0))
        self.assertEqual(second[("user:1", "day", DAY)], (5, 150))
        self.assertEqual(UsageWindow.objects.count(), 2)  # one row per account and window

    def test_a_zero_delta_reads_without_writing(self) -> None:
        self.records.add_usage(deltas("addr:127.0.0.1", 1, 10))
        totals = self.records.add_usage(deltas("addr:127.0.0.1", 0, 0) + deltas("user:2", 0, 0))
        self.assertEqual(totals[("addr:127.0.0.1", "day", DAY)], (1, 10))
        self.assertEqual(totals[("user:2", "day", DAY)], (0, 0))
        self.assertFalse(UsageWindow.objects.filter(owner="user:2").exists())

    def test_accounts_are_counted_apart(self) -> None:
        self.records.add_usage(deltas("addr:127.0.0.1", 4, 40) + deltas("addr:127.0.0.2", 1, 1))
        self.assertEqual(self.records.usage_of("addr:127.0.0.1", MINUTE, DAY), (4, 40))
        self.assertEqual(self.records.usage_of("addr:127.0.0.2", MINUTE, DAY), (1, 1))
        self.assertEqual(self.records.usage_of("user:9", MINUTE, DAY), (0, 0))

    def test_old_windows_are_pruned_and_todays_kept(self) -> None:
        self.records.add_usage(deltas("user:1", 1, 1))
        self.records.add_usage([UsageDelta("user:1", "day", DAY - 3 * 86400, 7, 70)])
        self.assertEqual(self.records.prune_usage(DAY - 86400), 1)
        self.assertEqual(self.records.usage_of("user:1", MINUTE, DAY), (1, 1))


def test_a_byte_limit_is_said_in_the_same_words_on_both_sides() -> None:
    """Once "15.3 MiB of 16000000" (the cap unformatted) and, in the meter, "16000000 of
    1000000": both sides in binary units now (tunnels/sizes.py, lt's rule too)."""
    from tunnels.account_view import _usage_rows
    from tunnels.plans import PlanLimits
    from tunnels.usage import Usage

    limits = PlanLimits("Free", 5, 10, 600, 1_000_000, 0, 0, False)
    rows = _usage_rows(limits, Usage(1, 0, 16_000_000, 0))
    (day,) = [row for row in rows if row.get("bytes")]
    assert day["shown"] == "15 MiB of 977 KiB"
    live = next(row for row in rows if row["label"] == "Live tunnels")
    assert live["shown"] == "1 of 5"
