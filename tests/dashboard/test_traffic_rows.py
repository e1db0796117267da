"""The dashboard's minute rows (tunnels/traffic_rows.py) and the relay's writes of them
(relay/traffic.py): additions per node and minute, sums over nodes, pruning, and a relay
that writes the same minute twice, or again after a failure, counting it once."""

from __future__ import annotations

from django.test import TestCase, TransactionTestCase

from relay.face import Counts, Minute, MinuteRollup
from relay.protocol import HISTORY_MINUTES
from relay.traffic import Traffic
from tunnels import traffic_rows
from tunnels.models import TrafficMinute

T0 = 1_800_000_000 - 1_800_000_000 % 60  # a minute's first second


class TrafficRowsTests(TestCase):
    def test_adding_twice_to_a_minute_adds_and_makes_one_row(self) -> None:
        traffic_rows.add_minutes([MinuteRollup("alpha", T0, 3, 100, 200)])
        traffic_rows.add_minutes([MinuteRollup("alpha", T0, 2, 10, 20)])
        self.assertEqual(TrafficMinute.objects.count(), 1)
        row = TrafficMinute.objects.get()
        self.assertEqual((row.requests, row.bytes_in, row.bytes_out), (5, 110, 220))

    def test_one_batch_may_hold_several_nodes_and_minutes_and_repeats(self) -> None:
        traffic_rows.add_minutes(
            [
                MinuteRollup("alpha", T0, 1, 1, 1),
                MinuteRollup("alpha", T0, 1, 1, 1),
                MinuteRollup("bravo", T0, 4, 40, 400),
                MinuteRollup("alpha", T0 + 60, 7, 0, 0),
            ]
        )
        by_node = {(r.node, r.start): r.requests for r in traffic_rows.by_node_since(T0)}
        self.assertEqual(by_node, {("alpha", T0): 2, ("bravo", T0): 4, ("alpha", T0 + 60): 7})

    def test_minutes_since_sums_over_nodes(self) -> None:
        traffic_rows.add_minutes(
            [
                MinuteRollup("alpha", T0 - 60, 9, 9, 9),
                MinuteRollup("alpha", T0, 1, 10, 100),
                MinuteRollup("bravo", T0, 2, 20, 200),
            ]
        )
        self.assertEqual(traffic_rows.minutes_since(T0), [MinuteRollup("", T0, 3, 30, 300)])

    def test_pruning_deletes_only_older_minutes(self) -> None:
        traffic_rows.add_minutes(
            [MinuteRollup("", T0 - 120, 1, 0, 0), MinuteRollup("", T0, 1, 0, 0)]
        )
        self.assertEqual(traffic_rows.prune_minutes(T0), 1)
        self.assertEqual([r.start for r in traffic_rows.minutes_since(0)], [T0])

    def test_the_hour_sums_rows_and_unwritten_minutes_and_counts_gaps_zero(self) -> None:
        current = T0 + 600
        hour = traffic_rows.hour(
            [
                MinuteRollup("alpha", T0, 1, 2, 3),
                MinuteRollup("bravo", T0, 10, 20, 30),
                Minute(T0, Counts(100, 0, 0)),
                MinuteRollup("alpha", current - 3600, 5, 5, 5),  # before the hour: left out
            ],
            current,
        )
        self.assertEqual(len(hour), HISTORY_MINUTES)
        self.assertEqual(hour[-1].start, current)
        totals = {m.start: m.counts for m in hour if m.counts != Counts()}
        self.assertEqual(totals, {T0: Counts(111, 22, 33)})


class Counted:
    """A stand-in tunnel for the sampler: only the counters it reads."""

    user_id = None

    def __init__(self) -> None:
        self.requests = self.bytes_in = self.bytes_out = 0


class RelayWritesTests(TransactionTestCase):
    """relay/traffic.py's writes through the records port (tunnels/records.py)."""

    async def test_a_repeated_write_adds_nothing_and_a_new_one_only_the_growth(self) -> None:
        traffic, tunnel = Traffic(), Counted()
        tunnel.requests, tunnel.bytes_out = 3, 300
        traffic.sample([tunnel], T0 + 1)  # type: ignore[list-item]
        self.assertEqual(await traffic.write_minutes("alpha", T0 + 1), 1)
        self.assertEqual(await traffic.write_minutes("alpha", T0 + 2), 0)
        tunnel.requests, tunnel.bytes_out = 5, 500
        traffic.sample([tunnel], T0 + 3)  # type: ignore[list-item]
        await traffic.write_minutes("alpha", T0 + 3)
        row = await TrafficMinute.objects.aget(node="alpha")
        self.assertEqual((row.requests, row.bytes_out), (5, 500))

    async def test_a_restarted_relay_adds_to_the_minute_its_earlier_run_wrote(self) -> None:
        before, after, tunnel = Traffic(), Traffic(), Counted()
        tunnel.requests = 4
        before.sample([tunnel], T0 + 1)  # type: ignore[list-item]
        await before.write_minutes("", T0 + 1)
        fresh = Counted()  # the new run's tunnels count from zero
        fresh.requests = 6
        after.sample([fresh], T0 + 30)  # type: ignore[list-item]
        await after.write_minutes("", T0 + 30)
        row = await TrafficMinute.objects.aget(node="")
        self.assertEqual(row.requests, 10)

    async def test_old_rows_are_pruned_when_a_relay_writes(self) -> None:
        await TrafficMinute.objects.acreate(
            node="", start=traffic_rows._at(T0 - 2 * 86400), requests=1
        )
        traffic = Traffic()
        await traffic.write_minutes("", T0)
        self.assertFalse(await TrafficMinute.objects.filter(requests=1).aexists())
