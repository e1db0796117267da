"""A plan's bandwidth (Plan.max_bytes_per_second): bytes per second per owner on this relay,
in each direction, all the owner's tunnels together. Sans-IO: buckets are fed sizes and
times and answer how long to wait; the byte path does the waiting.

Applied as backpressure, never by dropping data: before a piece of n bytes is passed on,
its copier takes n from the owner's bucket for that direction and waits the delay it is
given (relay/proxy/exchange.py, relay/proxy/ws_bridge.py, relay/pool/tcp_visitor.py). While
it waits it reads nothing more, so the far side's TCP window closes (the pool socket's inbox
stops at READ_HIGH_WATER; a visitor's upload stays in its spool or kernel buffer).

A piece is taken whole, however large, and its wait is the debt it leaves: the data is never
split or copied to fit the bucket. Concurrent copiers of one owner share the debt, so each
waits its turn and together they move at the rate.

An owner's `Shaper` lives while it has live tunnels on this relay (`join` at registration,
`leave` when a tunnel closes): the table holds no more owners than there are tunnels.
"""

from __future__ import annotations

from relay.protocol import BANDWIDTH_BURST_S, BANDWIDTH_DUST_BYTES, BANDWIDTH_MIN_BURST_BYTES


def burst_for(rate: float) -> float:
    """The bucket's depth for `rate` bytes per second (relay.protocol: BANDWIDTH_BURST_S)."""
    return max(rate * BANDWIDTH_BURST_S, float(BANDWIDTH_MIN_BURST_BYTES))


class Bucket:
    """A token bucket that lends: `take(n, now)` always takes n (tokens may go below zero)
    and returns the seconds until the debt is paid, 0.0 when there was room. A caller that
    waits that long before passing its piece on passes, over any interval, at most
    `rate * seconds + burst` bytes (and a byte of float rounding: BANDWIDTH_DUST_BYTES)."""

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

    def leave(self, shaper: Shaper) -> None:
        """A tunnel holding `shaper` closed: the owner's entry goes with its last tunnel."""
        shaper.tunnels -= 1
        if shaper.tunnels <= 0 and self.owners.get(shaper.owner) is shaper:
            del self.owners[shaper.owner]


# The relay's table: one per process, like the registry it serves (entries come and go with
# tunnels, so tests that reset the registry leave it empty once their tunnels closed).
owners = Table()
