"""Plan limits on the byte path: integer checks on in-memory counters, no ORM, no logging.

A tunnel opened under a plan with limits carries a `Quota` (tunnel.quota); tunnels without
limits carry None and pay one attribute read per request. Windows are fixed, not sliding:
a minute for requests, a day for bytes (in + out), both counted per tunnel and reset when
the tunnel is closed (a reconnect after the grace period starts afresh).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Protocol

from django.conf import settings

from relay.asgi_types import Scope
from relay.headers import address_key as _address_key
from relay.headers import client_ip, is_trusted_proxy, normal_ip
from relay.protocol import DAY_S, MINUTE_S, REGISTRATION_OWNERS_KEPT, VISITOR_KEYS_CACHED


def address_key(ip: str) -> str:
    """What counts as one visitor for per-address limits (RELAY_MAX_CONNECTIONS_PER_IP,
    RELAY_WS_MAX_PER_VISITOR): one spelling per address, IPv6 per RELAY_IPV6_PREFIX network,
    the same key owners are counted by (tunnels/auth.py)."""
    return _address_key(ip, settings.RELAY_IPV6_PREFIX)


def visitor_key(scope: Scope) -> str:
    """address_key of the request's visitor (relay.headers.client_ip: through a trusted
    proxy, the address it names; through a cluster hop, the visitor's). Called per request
    for its share of the tunnel's sockets, so a direct peer's key is remembered."""
    client = scope.get("client") or ("", 0)
    peer = client[0] or ""
    if is_trusted_proxy(peer):
        return address_key(client_ip(scope))
    return _peer_key(peer, settings.RELAY_IPV6_PREFIX)


@functools.lru_cache(maxsize=VISITOR_KEYS_CACHED)
def _peer_key(peer: str, ipv6_prefix: int) -> str:
    return _address_key(normal_ip(peer), ipv6_prefix)


class Metered(Protocol):
    """What a quota reads of its tunnel (relay/pool/tunnel.py), and how it closes an idle one."""

    name: str
    bytes_in: int
    bytes_out: int
    last_activity: float
    closed: bool

    @property
    def visitors_connected(self) -> int: ...  # a TCP tunnel's visitor connections open now

    def close_idle(self, reason: str) -> None: ...


Refusal = tuple[int, str, int | None]  # status, message, Retry-After seconds


class Quota:
    __slots__ = (
        "per_minute",
        "per_day_bytes",
        "max_body_bytes",
        "idle_timeout_s",
        "minute_start",
        "minute_count",
        "day_start",
        "day_bytes_before",
        "idle_timer",
    )

    def __init__(
        self, per_minute: int, per_day_bytes: int, max_body_bytes: int, idle_timeout_s: int
    ) -> None:
        self.per_minute = per_minute
        self.per_day_bytes = per_day_bytes
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        now = time.monotonic()
        self.minute_start = now
        self.minute_count = 0
        self.day_start = now
        self.day_bytes_before = 0
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.per_minute or self.per_day_bytes or self.max_body_bytes or self.idle_timeout_s
        )

    def admit(self, tunnel: Metered, scope: Scope, now: float) -> Refusal | None:
        """None to let the request through, else what to answer instead."""
        refusal = self._per_minute(tunnel, now) or self._per_day(tunnel, now)
        if refusal is not None:
            return refusal
        if self.max_body_bytes:
            length = _body_length(scope)
            if length is not None and length > self.max_body_bytes:
                return (
                    413,
                    f"The tunnel {tunnel.name} accepts request bodies of at most "
                    f"{self.max_body_bytes} bytes.",
                    None,
                )
        return None

    def admit_connection(self, tunnel: Metered, now: float) -> bool:
        """A TCP tunnel's visitor connection counts as a request: whether it may open (a
        TCP client cannot be told why not, so no message)."""
        return self._per_minute(tunnel, now) is None and self._per_day(tunnel, now) is None

    def over_day_bytes(self, tunnel: Metered) -> bool:
        """Whether the day's bytes ran out: the cheap check per chunk of a TCP connection
        (the window is moved on only when it says so, which is rare)."""
        if not self.per_day_bytes:
            return False
        if tunnel.bytes_in + tunnel.bytes_out - self.day_bytes_before < self.per_day_bytes:
            return False
        return self._per_day(tunnel, time.monotonic()) is not None

    def _per_minute(self, tunnel: Metered, now: float) -> Refusal | None:
        if not self.per_minute:
            return None
        if now - self.minute_start >= MINUTE_S:
            self.minute_start, self.minute_count = now, 0
        self.minute_count += 1
        if self.minute_count <= self.per_minute:
            return None
        wait = int(MINUTE_S - (now - self.minute_start)) + 1
        return (
            429,
            f"The tunnel {tunnel.name} has had its {self.per_minute} requests for "
            "this minute; try again shortly.",
            wait,
        )

    def _per_day(self, tunnel: Metered, now: float) -> Refusal | None:
        if not self.per_day_bytes:
            return None
        total = tunnel.bytes_in + tunnel.bytes_out
        if now - self.day_start >= DAY_S:
            self.day_start, self.day_bytes_before = now, total
        if total - self.day_bytes_before < self.per_day_bytes:
            return None
        wait = int(DAY_S - (now - self.day_start)) + 1
        return (429, f"The tunnel {tunnel.name} has used its daily traffic allowance.", wait)

    # --- idle timeout -----------------------------------------------------------------------
    def start_idle_timer(self, tunnel: Metered) -> None:
        if self.idle_timeout_s and self.idle_timer is None:
            self._schedule(tunnel, float(self.idle_timeout_s))

    def _schedule(self, tunnel: Metered, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(delay, self.check_idle, tunnel)

    def check_idle(self, tunnel: Metered, now: float | None = None) -> bool:
        """Close the tunnel if it has been idle too long (True), else check again later."""
        self.idle_timer = None
        if tunnel.closed:
            return False
        now = time.monotonic() if now is None else now
        if tunnel.visitors_connected:  # a quiet database session is still in use: activity
            tunnel.last_activity = max(tunnel.last_activity, now)
        idle_for = now - tunnel.last_activity
        if idle_for >= self.idle_timeout_s:
            tunnel.close_idle(f"idle for {self.idle_timeout_s} s")
            return True
        self._schedule(tunnel, self.idle_timeout_s - idle_for)
        return False

    def cancel_idle_timer(self) -> None:
        """The tunnel closed: no idle check is left scheduled for it."""
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None


def _body_length(scope: Scope) -> int | None:
    known = scope.get("extensions", {}).get("tunnelsite.body_length")
    if known is not None:
        return int(known)
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class RegistrationRate:
    """Registrations per owner: a token bucket each, in memory.

    `take(owner, now)` spends one registration and returns 0, or the seconds until the
    next one is allowed. Owners whose bucket is full again are forgotten once there are
    more than PRUNE_ABOVE, so the table stays bounded by those registering right now; the
    next pruning waits until the table has doubled, so its cost is spread over the takes.
    """

    PRUNE_ABOVE = REGISTRATION_OWNERS_KEPT

    def __init__(self, burst: int, per_minute: float) -> None:
        self.burst = float(burst)
        self.per_s = per_minute / MINUTE_S
        self.buckets: dict[str, tuple[float, float]] = {}  # owner -> (tokens, at)
        self.prune_at = self.PRUNE_ABOVE

    def wait(self, owner: str, now: float) -> float:
        """The seconds until `owner` may register again (0: now), spending nothing."""
        if self.per_s <= 0 or owner not in self.buckets:
            return 0.0
        tokens, at = self.buckets[owner]
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_s

    def take(self, owner: str, now: float) -> float:
        if self.per_s <= 0:
            return 0.0
        tokens, at = self.buckets.get(owner, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        if tokens < 1.0:
            self.buckets[owner] = (tokens, now)
            return (1.0 - tokens) / self.per_s
        self.buckets[owner] = (tokens - 1.0, now)
        if len(self.buckets) > self.prune_at:
            self._prune(now)
            self.prune_at = max(self.PRUNE_ABOVE, 2 * len(self.buckets))
        return 0.0

    def _prune(self, now: float) -> None:
        full = [
            owner
            for owner, (tokens, at) in self.buckets.items()
            if tokens + (now - at) * self.per_s >= self.burst
        ]
        for owner in full:
            del self.buckets[owner]
