"""The dashboard's minute rows (tunnels/traffic_rows.py) and the relay's writes of them
(relay/traffic.py): additions per node and minute, sums over nodes, pruning, a relay
that writes the same minute twice, or again after a failure, counting it once, and a write
that commits while the dashboard reads counting once too."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import timedelta
from typing import Any
from unittest import mock

from asgiref.sync import async_to_sync
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone
from harness.accounts import fresh_registry, make_user
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from relay import records
from relay.face import Counts, Minute, MinuteRollup
from relay.protocol import HISTORY_MINUTES, SAMPLE_S
from relay.traffic import Traffic, run_sampler
from tunnels import traffic_rows
from tunnels.models import Node, TrafficMinute

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


class Tunnels:
    """A stand-in registry for the sampler: only its tunnels."""

    def __init__(self, *tunnels: Counted) -> None:
        self.tunnels = {str(n): tunnel for n, tunnel in enumerate(tunnels)}


class StalledWrites:
    """The records port with its minute writes held until `go` is set, as by a database that
    stops answering (a SQLite lock held elsewhere, a PostgreSQL stall); counts the writes
    begun and the most running at once."""

    def __init__(self, real: records.Records) -> None:
        self.real = real
        self.go = threading.Event()
        self.begun = self.running = self.most = 0
        self._count = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def add_minutes(self, rollups: list[MinuteRollup]) -> None:
        with self._count:
            self.begun += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if not self.go.wait(IO_TIMEOUT_S):
                raise TimeoutError("the test never let the write through")
            self.real.add_minutes(rollups)
        finally:
            with self._count:
                self.running -= 1


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

    async def test_a_stalled_write_stops_neither_the_samples_nor_the_rates(self) -> None:
        """The sampler wants to write at every sample here (flush_s: what the test is
        about); with the database stalled, one write is in flight and the samples go on."""
        real, traffic, tunnel = records.get(), Traffic(), Counted()
        stalled = StalledWrites(real)
        records.install(stalled)  # type: ignore[arg-type]
        tunnel.requests = 5
        sampler = asyncio.get_running_loop().create_task(
            run_sampler(Tunnels(tunnel), traffic, node="alpha", flush_s=SAMPLE_S)  # type: ignore[arg-type]
        )
        try:
            await wait_until_async(lambda: stalled.begun, IO_TIMEOUT_S, "the first write")
            for requests in (10, 20):
                tunnel.requests = requests
                await wait_until_async(
                    lambda want=requests: traffic.total.requests == want,
                    5 * SAMPLE_S,
                    f"a sample of {requests} requests while the write is stalled",
                )
            self.assertGreater(traffic.rates().requests_per_s, 0)
            self.assertEqual((stalled.begun, stalled.most), (1, 1))
            stalled.go.set()
            await wait_until_async(
                lambda: not traffic.unwritten() and traffic.writes_done == traffic.writes_begun,
                IO_TIMEOUT_S,
                "the minutes written once the database answers",
            )
        finally:
            stalled.go.set()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await traffic.write_minutes("alpha", time.time())  # after the one in flight
            records.install(real)
        self.assertEqual(stalled.most, 1)
        rows = [row async for row in TrafficMinute.objects.filter(node="alpha")]
        self.assertEqual(sum(row.requests for row in rows), 20)

    async def test_old_rows_are_pruned_when_a_relay_writes(self) -> None:
        await TrafficMinute.objects.acreate(
            node="", start=traffic_rows._at(T0 - 2 * 86400), requests=1
        )
        traffic = Traffic()
        await traffic.write_minutes("", T0)
        self.assertFalse(await TrafficMinute.objects.filter(requests=1).aexists())


class DashboardOverNodesTests(TestCase):
    """The dashboard's JSON reads the hour from every node's rows (tunnels/dashboard.py)."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)
        now = timezone.now()
        for name, age_s in (("alpha", 0.5), ("bravo", 1.0), ("charlie", 60.0)):
            Node.objects.create(
                name=name,
                advertise="10.0.0.1:8080",
                started_at=now - timedelta(hours=1),
                last_heartbeat=now - timedelta(seconds=age_s),
            )
        current = int(time.time() // 60) * 60
        traffic_rows.add_minutes(
            [
                MinuteRollup("bravo", current, 60, 6000, 12000),
                MinuteRollup("charlie", current, 600, 0, 0),  # dead: in the hour, not the rates
                MinuteRollup("alpha", current - 1800, 5, 0, 0),  # alpha's earlier run
                MinuteRollup("bravo", current - 7200, 1000, 0, 0),  # before the hour
            ]
        )

    async def _data(self) -> dict[str, Any]:
        async with fresh_registry():  # this node carried nothing itself
            await self.async_client.aforce_login(self.operator)
            answer = await self.async_client.get("/admin/dashboard/data")
        self.assertEqual(answer.status_code, 200)
        return answer.json()

    @override_settings(RELAY_NODE_NAME="alpha", RELAY_NODE_EXPIRY_S=6.0)
    async def test_a_node_charts_every_nodes_hour_and_adds_the_live_ones_rates(self) -> None:
        data = await self._data()
        self.assertEqual(sum(minute[1] for minute in data["minutes"]), 665)
        self.assertIn("5 requests", data["chart_html"])
        # bravo's 60 requests over at most two minutes; dead charlie's 600 are not a rate.
        self.assertGreaterEqual(data["requests_per_s"], 60 / 120)
        self.assertLessEqual(data["requests_per_s"], 60.0)
        self.assertLess(data["requests_per_s"], 600 / 120)

    async def test_a_single_relay_charts_the_rows_but_rates_only_its_own(self) -> None:
        data = await self._data()
        self.assertEqual(sum(minute[1] for minute in data["minutes"]), 665)
        self.assertEqual(data["requests_per_s"], 0.0)


class WriteWhileTheDashboardReadsTests(TestCase):
    """The dashboard reads this node's unwritten minutes on the loop and every node's rows in
    its worker thread: a write of the minutes committing between the two (the sampler's,
    every RELAY_FLUSH_S) must not put the same traffic in both."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.operator = make_user("operator", is_staff=True, is_superuser=True)

    async def test_a_write_between_the_snapshot_and_the_rows_is_counted_once(self) -> None:
        traffic, tunnel = Traffic(), Counted()
        tunnel.requests, tunnel.bytes_out = 7, 700
        traffic.sample([tunnel], time.time())  # type: ignore[list-item]
        read_rows = traffic_rows.by_node_since
        reads: list[int] = []

        def written_first(start: int) -> list[MinuteRollup]:
            """The dashboard's first read of the rows, right after the relay wrote its
            minutes: the relay's own write, on the loop, from the view's thread."""
            if not reads:
                self.assertEqual(async_to_sync(traffic.write_minutes)("", time.time()), 1)
            reads.append(start)
            return read_rows(start)

        with (
            mock.patch("relay.traffic._traffic", traffic),
            mock.patch.object(traffic_rows, "by_node_since", written_first),
        ):
            async with fresh_registry():
                await self.async_client.aforce_login(self.operator)
                answer = await self.async_client.get("/admin/dashboard/data")
        self.assertEqual(answer.status_code, 200)
        minutes = answer.json()["minutes"]
        self.assertEqual(sum(minute[1] for minute in minutes), 7)
        self.assertEqual(sum(minute[3] for minute in minutes), 700)
        self.assertEqual(await TrafficMinute.objects.acount(), 1)

    async def test_without_a_write_between_them_the_rows_are_read_once(self) -> None:
        traffic, tunnel = Traffic(), Counted()
        tunnel.requests = 3
        traffic.sample([tunnel], time.time())  # type: ignore[list-item]
        await traffic.write_minutes("", time.time())
        tunnel.requests = 5
        traffic.sample([tunnel], time.time())  # type: ignore[list-item]
        with (
            mock.patch("relay.traffic._traffic", traffic),
            mock.patch.object(
                traffic_rows, "by_node_since", wraps=traffic_rows.by_node_since
            ) as read,
        ):
            async with fresh_registry():
                await self.async_client.aforce_login(self.operator)
                answer = await self.async_client.get("/admin/dashboard/data")
        self.assertEqual(sum(minute[1] for minute in answer.json()["minutes"]), 5)
        self.assertEqual(read.call_count, 1)
