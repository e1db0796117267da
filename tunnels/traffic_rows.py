"""The dashboard's minutes in the database (TrafficMinute): every node's traffic per minute,
so the admin dashboard's hour covers the whole cluster and survives a restart.

Relays write through the records port (relay/traffic.py, in batches: each finished minute,
and the current one every RELAY_FLUSH_S); what they write is what grew since their last
write, added to the row (a restarted relay starts counting from zero and adds to the minute
its earlier run began). The dashboard reads the hour with one query per poll.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F, Sum

from relay.face import Counts, Minute, MinuteRollup
from relay.protocol import HISTORY_MINUTES
from tunnels.models import TrafficMinute


def _at(start: int) -> datetime:
    return datetime.fromtimestamp(start, UTC)


def _unix(at: datetime) -> int:
    return int(at.timestamp())


def add_minutes(rollups: Iterable[MinuteRollup]) -> None:
    """Add each rollup to its (node, minute) row, creating missing rows; one transaction.

    Only one relay writes a node's rows (a node name is held by one process: relay/cluster),
    so reading the existing rows and then adding to them cannot race another writer's insert.
    """
    grown: dict[tuple[str, int], Counts] = defaultdict(Counts)
    for rollup in rollups:
        key = (rollup.node, rollup.start)
        grown[key] = grown[key].plus(Counts(rollup.requests, rollup.bytes_in, rollup.bytes_out))
    if not grown:
        return
    with transaction.atomic():
        for node in {node for node, _ in grown}:
            starts = [_at(start) for (n, start) in grown if n == node]
            existing = {
                _unix(at): pk
                for pk, at in TrafficMinute.objects.select_for_update()
                .filter(node=node, start__in=starts)
                .values_list("pk", "start")
            }
            missing = []
            for (n, start), counts in grown.items():
                if n != node:
                    continue
                if start in existing:
                    TrafficMinute.objects.filter(pk=existing[start]).update(
                        requests=F("requests") + counts.requests,
                        bytes_in=F("bytes_in") + counts.bytes_in,
                        bytes_out=F("bytes_out") + counts.bytes_out,
                    )
                else:
                    missing.append(
                        TrafficMinute(
                            node=node,
                            start=_at(start),
                            requests=counts.requests,
                            bytes_in=counts.bytes_in,
                            bytes_out=counts.bytes_out,
                        )
                    )
            TrafficMinute.objects.bulk_create(missing)


def by_node_since(start: int) -> list[MinuteRollup]:
    """Each node's minutes from `start` (Unix time) on, oldest first: one query."""
    rows = (
        TrafficMinute.objects.filter(start__gte=_at(start))
        .order_by("start", "node")
        .values_list("node", "start", "requests", "bytes_in", "bytes_out")
    )
    return [MinuteRollup(node, _unix(at), *counts) for node, at, *counts in rows]


def minutes_since(start: int) -> list[MinuteRollup]:
    """Every node's minutes from `start` on, summed over nodes (node ""), oldest first."""
    rows = (
        TrafficMinute.objects.filter(start__gte=_at(start))
        .values("start")
        .annotate(requests=Sum("requests"), bytes_in=Sum("bytes_in"), bytes_out=Sum("bytes_out"))
        .order_by("start")
    )
    return [
        MinuteRollup("", _unix(row["start"]), row["requests"], row["bytes_in"], row["bytes_out"])
        for row in rows
    ]


def prune_minutes(before: int) -> int:
    """Delete the minutes that started before `before` (Unix time); how many."""
    deleted, _ = TrafficMinute.objects.filter(start__lt=_at(before)).delete()
    return deleted


def hour(rollups: Iterable[MinuteRollup | Minute], current: int) -> list[Minute]:
    """The `HISTORY_MINUTES` minutes up to the one starting at `current`, oldest first, each
    the sum of every node's rollups (or Minutes) for it; minutes nobody wrote count zero (a
    relay that was down, a quiet minute)."""
    first = current - 60 * (HISTORY_MINUTES - 1)
    totals: dict[int, Counts] = defaultdict(Counts)
    for item in rollups:
        if isinstance(item, Minute):
            start, counts = item.start, item.counts
        else:
            start, counts = item.start, Counts(item.requests, item.bytes_in, item.bytes_out)
        if first <= start <= current:
            totals[start] = totals[start].plus(counts)
    return [Minute(start, totals[start]) for start in range(first, current + 1, 60)]
