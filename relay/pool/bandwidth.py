"""A plan's bandwidth (Plan.max_bytes_per_second): bytes per second per owner on this relay,
in each direction, all the owner's tunnels together. The buckets are sans-IO (fed sizes and
times, they answer how long to wait); `pace` and `wait` are the one place a copier waits.

Applied as backpressure, never by dropping data: before a piece of n bytes is passed on,
its copier takes n from the owner's bucket for that direction and waits the delay it is
given (relay/proxy/exchange.py, relay/proxy/ws_bridge.py, relay/pool/tcp_visitor.py). While
it waits it reads nothing more, so the far side's TCP window closes (the pool socket's inbox
stops at READ_HIGH_WATER; a visitor's upload stays in its spool or kernel buffer).

A piece is taken whole and its wait is the debt it leaves: the data is never copied to fit
the bucket. Concurrent copiers of one owner share the debt, so each waits its turn and
together they move at the rate. The wait is made in steps of at most BANDWIDTH_STEP_S, each
looking again at the tunnel: closed, its copier lets go; its owner's rate changed (a
reclaim under another plan), the debt left is waited at the new rate; its limit gone, at
once. Pieces are bounded where the relay chooses them (a TCP visitor's reads are sliced to
BANDWIDTH_SLICE_S of the rate), and the rate is at least BANDWIDTH_MIN_BYTES_PER_SECOND, so
no piece holds a pool socket for long.

An owner's `Shaper` lives while it has live tunnels on this relay (`join` at registration,
`rejoin` at a reclaim, `leave` when a tunnel closes): the table holds no more owners than
there are tunnels.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from relay.protocol import (
    BANDWIDTH_BURST_S,
    BANDWIDTH_DUST_BYTES,
    BANDWIDTH_MIN_BURST_BYTES,
    BANDWIDTH_MIN_BYTES_PER_SECOND,
    BANDWIDTH_SLICE_S,
    BANDWIDTH_STEP_S,
)


def burst_for(rate: float) -> float:
    """The bucket's depth for `rate` bytes per second (relay.protocol: BANDWIDTH_BURST_S)."""
    return max(rate * BANDWIDTH_BURST_S, float(BANDWIDTH_MIN_BURST_BYTES))


def slice_for(rate: float) -> int:
    """The most bytes of one TCP read passed on at once under `rate` (BANDWIDTH_SLICE_S)."""
    return max(int(rate * BANDWIDTH_SLICE_S), 1)


class Bucket:
    """A token bucket that lends: `take(n, now)` always takes n (tokens may go below zero)
    and returns the seconds until the debt is paid, 0.0 when there was room.

    The bound, for callers (any number, sharing it) that each wait their delay before
    passing their piece on, at one rate: the pieces passed on in any interval of `seconds`
    are at most `rate * seconds + max(burst, first)` bytes, `first` the size of the first
    of them (and a byte of float rounding, BANDWIDTH_DUST_BYTES). Not `rate * seconds +
    burst`: a piece larger than the burst, taken whole, passes all at once after its wait.
    Proof: pieces pass in the order they were taken (a later take's debt is deeper), so
    those passed in the interval are takes k..m. With L the level just before take k,
    the level after take m is at most L plus the refill minus the sum, so
    `sum <= L + rate * (t_m - t_k) - level_m`, and waiting its debt means `-level_m <=
    rate * (p_m - t_m)`: `sum <= L + rate * (p_m - t_k)`. If piece k passed at once
    (p_k = t_k), L <= burst gives the bound; if it waited, `rate * (p_k - t_k) = n_k - L`
    gives `sum <= rate * (p_m - p_k) + n_k`."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = burst_for(self.rate)
        self.tokens = self.burst  # a new owner starts with a full bucket
        self.at = now

    def take(self, n: int, now: float) -> float:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        self.tokens -= n
        if self.tokens > -BANDWIDTH_DUST_BYTES:
            return 0.0
        return -self.tokens / self.rate

    def set_rate(self, rate: float, now: float) -> None:
        """A new rate from now on (the owner's latest registration); the debt is kept."""
        self.take(0, now)
        self.rate = float(rate)
        self.burst = burst_for(self.rate)
        self.tokens = min(self.tokens, self.burst)


def floor_rate(rate: int) -> int:
    """A plan's rate as paced: 0 (no limit) or at least BANDWIDTH_MIN_BYTES_PER_SECOND (a
    plan row saved before the admin's form checked it)."""
    return max(rate, BANDWIDTH_MIN_BYTES_PER_SECOND) if rate > 0 else 0


def rescale(due: float, rate: float, bucket: Bucket, now: float) -> float:
    """A wait's end `due`, computed at `rate`, at the bucket's rate now: the debt left, in
    bytes, is kept (as Bucket.set_rate keeps it)."""
    if bucket.rate == rate or due <= now:
        return due
    return now + (due - now) * rate / bucket.rate


class Shaper:
    """One owner's buckets on this relay: `up` for visitor -> app (request bodies, the
    visitor's WebSocket messages, a TCP visitor's bytes), `down` for app -> visitor."""

    __slots__ = ("owner", "up", "down", "tunnels")

    def __init__(self, owner: str, rate: int, now: float) -> None:
        self.owner = owner
        self.up = Bucket(rate, now)
        self.down = Bucket(rate, now)
        self.tunnels = 0  # the owner's live tunnels holding this shaper

    @property
    def rate(self) -> int:
        return int(self.down.rate)


class Table:
    """Owner -> Shaper, an entry per owner with a live tunnel here that has a limit."""

    __slots__ = ("owners",)

    def __init__(self) -> None:
        self.owners: dict[str, Shaper] = {}

    def join(self, owner: str, rate: int, now: float) -> Shaper | None:
        """The shaper a new tunnel of `owner` uses (None: its plan has no limit). Tunnels of
        one owner share one; a registration under a different rate sets it for all of them
        (the latest plan wins, as it would after each reconnects)."""
        rate = floor_rate(rate)
        if rate <= 0:
            return None
        shaper = self.owners.get(owner)
        if shaper is None:
            shaper = self.owners[owner] = Shaper(owner, rate, now)
        elif shaper.rate != rate:
            shaper.up.set_rate(rate, now)
            shaper.down.set_rate(rate, now)
        shaper.tunnels += 1
        return shaper

    def rejoin(self, held: Shaper | None, owner: str, rate: int, now: float) -> Shaper | None:
        """The shaper a reclaimed tunnel, holding `held`, uses from now under `rate`: the
        one it holds (at the new rate) while the table still has it for the owner, else a
        joined one, the held one left first; None (the held one left) when the plan has no
        limit now. A tunnel counts once in `Shaper.tunnels` whatever the reclaims."""
        rate = floor_rate(rate)
        if held is not None and rate > 0 and self.owners.get(owner) is held:
            if held.rate != rate:
                held.up.set_rate(rate, now)
                held.down.set_rate(rate, now)
            return held
        if held is not None:
            self.leave(held)
        return self.join(owner, rate, now)

    def leave(self, shaper: Shaper) -> None:
        """A tunnel holding `shaper` closed: the owner's entry goes with its last tunnel."""
        shaper.tunnels -= 1
        if shaper.tunnels <= 0 and self.owners.get(shaper.owner) is shaper:
            del self.owners[shaper.owner]


# The relay's table: one per process, like the registry it serves (entries come and go with
# tunnels, so tests that reset the registry leave it empty once their tunnels closed).
owners = Table()


class Paced(Protocol):
    """What a copier's wait reads and counts of its tunnel (relay/pool/tunnel.py)."""

    shaper: Shaper | None
    closed: bool
    pacing: int  # copiers waiting on its owner's buckets now (its quota's idle timeout)
    last_activity: float


async def pace(tunnel: Paced, n: int, up: bool) -> None:
    """Take `n` bytes from the owner's bucket for a direction (`up`: visitor to app) and wait
    until the rate lets them pass; at once when the tunnel has no limit or there is room."""
    shaper = tunnel.shaper
    if shaper is None:
        return
    bucket = shaper.up if up else shaper.down
    now = time.monotonic()
    delay = bucket.take(n, now)
    if delay:
        await wait(tunnel, shaper, bucket, now + delay)


async def wait(tunnel: Paced, shaper: Shaper, bucket: Bucket, due: float) -> None:
    """Wait until `due` (monotonic; computed at the bucket's rate now), in steps of at most
    BANDWIDTH_STEP_S: the tunnel closed, or its shaper no longer `shaper` (its limit gone
    or replaced at a reclaim), ends the wait; a new rate rescales what is left. Counted in
    `tunnel.pacing` meanwhile, and the tunnel was active when it ends."""
    rate = bucket.rate
    tunnel.pacing += 1
    try:
        while not tunnel.closed and tunnel.shaper is shaper:
            now = time.monotonic()
            due = rescale(due, rate, bucket, now)
            rate = bucket.rate
            if due <= now:
                return
            await asyncio.sleep(min(due - now, BANDWIDTH_STEP_S))
    finally:
        tunnel.pacing -= 1
        tunnel.last_activity = max(tunnel.last_activity, time.monotonic())
