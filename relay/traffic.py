"""Relay-wide traffic for the admin dashboard: rates now, and per minute for the last hour;
and each live tunnel's own last hour, per minute, for its owner's account page.

A sampler task (started by relay/run/runner.py) reads the registry's in-memory counters once
every `SAMPLE_S` seconds and adds what changed since its previous look: nothing runs per
request and nothing touches the database. Traffic a tunnel carries between the sampler's
last look and its closing is not counted (at most one sample's worth). A tunnel's own minutes
are kept only for a tunnel with an owner (only an owner has an account page to show them),
only for minutes with traffic (the reader counts the others zero), so they are bounded by
live owned tunnels x HISTORY_MINUTES, and dropped at the first sample after it closes.

The relay-wide minutes also go to the database (TrafficMinute, through relay.records), so
the dashboard's hour covers every node and survives a restart: the same task writes what
grew since its last write, in one batch, when a minute ends and at most every RELAY_FLUSH_S
for the current one (and once more at shutdown). What was written is tracked per minute,
so a failed write is retried whole and a repeated one adds nothing. A write runs in a task
of its own, at most one at a time (a write still running when the next is due skips that
turn), so a slow database (SQLite's 5 s lock wait, PostgreSQL's 10 s statement timeout)
delays the rows, never the samples: the rates and the minutes stay right meanwhile.

A reader that adds this node's unwritten minutes to the rows (the dashboard) must not see a
write's minutes in both: `writes_begun` and `writes_done` count the writes, so a reader that
took `unwritten` while no write was running (Snapshot.unwritten_as_of) and finds no write
begun after reading the rows saw each minute once (a sequence lock; tunnels/dashboard.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from relay import database, records
from relay.pool.registry import Registry
from relay.pool.tunnel import Tunnel
from relay.protocol import (
    DEFAULT_FLUSH_S,
    HISTORY_MINUTES,
    MINUTE_ROWS_KEEP_S,
    MINUTE_ROWS_PRUNE_EVERY_S,
    RATE_WINDOW_S,
    SAMPLE_S,
)
from relay.records import MinuteRollup
from relay.tasks import background

logger = logging.getLogger(__name__)


class Counts(NamedTuple):
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def plus(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self, other, strict=True)))

    def minus(self, other: Counts) -> Counts:
        """The growth from `other` to self (never negative: counters only grow)."""
        return Counts(*(max(0, a - b) for a, b in zip(self, other, strict=True)))


@dataclass
class Minute:
    start: int  # Unix time of the minute's first second
    counts: Counts = Counts()


@dataclass(frozen=True)
class Rates:
    requests_per_s: float = 0.0
    bytes_in_per_s: float = 0.0
    bytes_out_per_s: float = 0.0


def minute_of(now: float) -> int:
    return int(now // 60) * 60


def counts_of(tunnel: Tunnel) -> Counts:
    return Counts(tunnel.requests, tunnel.bytes_in, tunnel.bytes_out)


class Traffic:
    """What the sampler has seen: running totals, recent samples and a ring of minutes."""

    def __init__(self) -> None:
        self.total = Counts()
        self.minutes: deque[Minute] = deque(maxlen=HISTORY_MINUTES)
        self.recent: deque[tuple[float, Counts]] = deque(maxlen=int(RATE_WINDOW_S / SAMPLE_S) + 1)
        self._seen: dict[Tunnel, tuple[int, int, int]] = {}  # each tunnel's last sample
        # Each live owned tunnel's minutes with traffic (a Tunnel hashes by identity: a
        # reclaimed tunnel keeps its history, a new tunnel under a closed one's name starts
        # afresh).
        self._per_tunnel: dict[Tunnel, deque[Minute]] = {}
        # What of each minute in the ring is in the database already (relay-wide minutes).
        self._written: dict[int, Counts] = {}
        self._write_lock = asyncio.Lock()  # the sampler's writes and the one at shutdown
        # Writes of minutes begun and finished (committed or failed): equal when none runs.
        self.writes_begun = 0
        self.writes_done = 0
        self._next_prune = 0.0  # Unix time of the next pruning of old minute rows
        self._writing: asyncio.Task[None] | None = None  # the sampler's write in flight

    def sample(self, tunnels: Iterable[Tunnel], now: float) -> Counts:
        """Add the traffic since the previous sample (at Unix time `now`); returns it.

        It runs on the event loop every SAMPLE_S, over every live tunnel: a tunnel whose
        counters did not move since the previous sample costs a tuple and two lookups, no
        arithmetic (with `Counts` sums per tunnel, 1,000 idle tunnels held the loop ~3 ms
        each second, and the p99 of the tunnels carrying traffic grew by as much)."""
        before = self._seen
        kept = self._per_tunnel
        seen: dict[Tunnel, tuple[int, int, int]] = {}
        per_tunnel: dict[Tunnel, deque[Minute]] = {}
        requests = bytes_in = bytes_out = 0
        start = minute_of(now)
        for tunnel in tunnels:
            counts = seen[tunnel] = (tunnel.requests, tunnel.bytes_in, tunnel.bytes_out)
            last = before.get(tunnel, _ZEROS)
            if counts != last:
                grown = Counts(  # never negative: counters only grow
                    max(0, counts[0] - last[0]),
                    max(0, counts[1] - last[1]),
                    max(0, counts[2] - last[2]),
                )
                requests += grown.requests
                bytes_in += grown.bytes_in
                bytes_out += grown.bytes_out
                if tunnel.user_id is None:
                    continue  # anonymous: no account page to show its minutes on
                minutes = kept.get(tunnel)
                if grown != _NOTHING:
                    if minutes is None:
                        minutes = deque(maxlen=HISTORY_MINUTES)
                    _add(minutes, start, grown)
            else:
                minutes = kept.get(tunnel)  # idle (an anonymous one has none)
            if minutes is not None:
                per_tunnel[tunnel] = minutes
        self._seen = seen
        self._per_tunnel = per_tunnel  # closed tunnels' minutes go with them
        added = Counts(requests, bytes_in, bytes_out)
        self.total = self.total.plus(added)
        _add(self.minutes, start, added)
        self.recent.append((now, self.total))
        return added

    def rates(self) -> Rates:
        """Per second, between the oldest and newest of the recent samples."""
        if len(self.recent) < 2:
            return Rates()
        (first_at, first), (last_at, last) = self.recent[0], self.recent[-1]
        elapsed = last_at - first_at
        if elapsed <= 0:
            return Rates()
        grown = last.minus(first)
        return Rates(*(value / elapsed for value in grown))

    def history(self, now: float) -> list[Minute]:
        """The last `HISTORY_MINUTES` minutes up to the current one, oldest first; minutes
        without a sample (before the relay started) count zero."""
        return _hour(self.minutes, now)

    def tunnel_history(self, tunnel: Tunnel, now: float) -> list[Minute]:
        """`tunnel`'s own last hour like `history` (zeros before the sampler first saw it)."""
        return _hour(self._per_tunnel.get(tunnel, ()), now)

    def unwritten(self) -> list[Minute]:
        """What grew in each minute of the ring since it was last written, oldest first."""
        pending = []
        for minute in self.minutes:
            grown = minute.counts.minus(self._written.get(minute.start, Counts()))
            if grown != _NOTHING:
                pending.append(Minute(minute.start, grown))
        return pending

    def mark_written(self, written: list[Minute]) -> None:
        for minute in written:
            self._written[minute.start] = self._written.get(minute.start, Counts()).plus(
                minute.counts
            )
        kept = {minute.start for minute in self.minutes}
        self._written = {start: c for start, c in self._written.items() if start in kept}

    async def write_minutes(self, node: str, now: float) -> int:
        """Add what grew since the last write to this node's minute rows (one transaction);
        prune rows older than MINUTE_ROWS_KEEP_S now and then. How many minutes written."""
        async with self._write_lock:
            pending = self.unwritten()
            if pending:
                rollups = [MinuteRollup(node, m.start, *m.counts) for m in pending]
                self.writes_begun += 1
                try:
                    await database.call(records.get().add_minutes, rollups)
                    self.mark_written(pending)
                finally:
                    self.writes_done = self.writes_begun
            if now >= self._next_prune:
                self._next_prune = now + MINUTE_ROWS_PRUNE_EVERY_S
                before = minute_of(now) - MINUTE_ROWS_KEEP_S
                await database.call(records.get().prune_minutes, before)
            return len(pending)

    def start_write(self, node: str, now: float) -> bool:
        """Write the minutes in a task of its own unless the previous one still runs (at
        most one in flight: the sampler skips a turn); whether it started. Call it on the
        loop."""
        if self._writing is not None and not self._writing.done():
            return False
        self._writing = background(self._write_logged(node, now))
        return True

    async def _write_logged(self, node: str, now: float) -> None:
        try:
            await self.write_minutes(node, now)
        except Exception:  # kept in memory: the next write adds it
            logger.exception("could not write the dashboard's minutes; will retry")

    def unwritten_as_of(self) -> int | None:
        """The write count `unwritten` is relative to now, or None while a write runs (its
        minutes may be committed already, or not yet)."""
        return self.writes_begun if self.writes_begun == self.writes_done else None

    @property
    def tunnels_kept(self) -> int:
        """Tunnels with a history now (the live owned ones that had traffic, at the last
        sample)."""
        return len(self._per_tunnel)


_NOTHING = Counts()
_ZEROS = (0, 0, 0)


def _add(minutes: deque[Minute], start: int, added: Counts) -> None:
    if not minutes or minutes[-1].start < start:
        minutes.append(Minute(start))
    minutes[-1].counts = minutes[-1].counts.plus(added)


def _hour(minutes: Iterable[Minute], now: float) -> list[Minute]:
    """Fresh copies of the hour's minutes up to `now`'s, oldest first; missing ones count 0."""
    by_start = {minute.start: minute.counts for minute in minutes}
    current = minute_of(now)
    starts = range(current - 60 * (HISTORY_MINUTES - 1), current + 1, 60)
    return [Minute(start, by_start.get(start, Counts())) for start in starts]


@dataclass(frozen=True)
class LiveTunnel:
    name: str
    user_id: int | None
    token_id: int | None
    client_ip: str
    sockets: int
    max_sockets: int
    counts: Counts
    opened_at: float
    node: str = ""  # scale-out: the node that owns it (the dashboard of a cluster)
    tcp_port: int = 0  # a TCP tunnel's public port; 0: an HTTP tunnel
    tcp_connections: int = 0  # a TCP tunnel's visitor connections open now


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, read in one go on the relay's event loop."""

    taken_at: float
    sockets: int
    in_flight: int
    rates: Rates
    minutes: list[Minute]
    live: list[LiveTunnel]
    # This node's traffic not yet in the minute rows (the dashboard adds it to theirs), and
    # the write count it was taken at (None: a write was running; Traffic.unwritten_as_of).
    unwritten: list[Minute] = dataclasses.field(default_factory=list)
    unwritten_as_of: int | None = None

    @property
    def tunnels(self) -> int:
        return len(self.live)


def snapshot(registry: Registry, traffic: Traffic, now: float) -> Snapshot:
    live = [
        LiveTunnel(
            name=tunnel.name,
            user_id=tunnel.user_id,
            token_id=tunnel.token_id,
            client_ip=tunnel.client_ip,
            sockets=tunnel.connected_sockets,
            max_sockets=tunnel.max_conn_count,
            counts=counts_of(tunnel),
            opened_at=tunnel.opened_at,
            tcp_port=tunnel.tcp.port if tunnel.tcp is not None else 0,
            tcp_connections=tunnel.tcp.live if tunnel.tcp is not None else 0,
        )
        for tunnel in registry.tunnels.values()
    ]
    live.sort(key=lambda tunnel: tunnel.name)
    return Snapshot(
        taken_at=now,
        sockets=sum(tunnel.sockets for tunnel in live),
        in_flight=registry.in_flight,
        rates=traffic.rates(),
        minutes=traffic.history(now),
        live=live,
        unwritten=traffic.unwritten(),
        unwritten_as_of=traffic.unwritten_as_of(),
    )


_traffic = Traffic()


def get_traffic() -> Traffic:
    return _traffic


async def run_sampler(
    registry: Registry,
    traffic: Traffic | None = None,
    node: str = "",
    flush_s: float = DEFAULT_FLUSH_S,
) -> None:
    """Sample the registry every `SAMPLE_S` seconds until cancelled; write the minutes as
    node `node` ("" for a single relay) when a minute ends and at most every `flush_s`, in a
    task of its own (a write still running then is left to finish: the next sample tries
    again). A write running when this is cancelled finishes on its own; the one at
    shutdown (`write_last_minutes`) waits for it."""
    traffic = traffic or get_traffic()
    next_write, last_minute = 0.0, 0
    while True:
        now = time.time()
        try:
            traffic.sample(registry.tunnels.values(), now)
        except Exception:  # a bug here must not stop the relay, only the chart
            logger.exception("could not sample tunnel traffic")
        if (now >= next_write or minute_of(now) != last_minute) and traffic.start_write(node, now):
            next_write, last_minute = now + flush_s, minute_of(now)
        await asyncio.sleep(SAMPLE_S)


async def write_last_minutes(registry: Registry, node: str) -> None:
    """At shutdown, before the tunnels close: sample once more and write what is left."""
    traffic = get_traffic()
    now = time.time()
    try:
        traffic.sample(registry.tunnels.values(), now)
        await traffic.write_minutes(node, now)
    except Exception:
        logger.exception("could not write the dashboard's last minutes")
