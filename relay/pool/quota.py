"""Plan limits on the byte path: integer checks on in-memory counters, no ORM, no logging.

A tunnel opened under a plan with limits carries a `Quota` (tunnel.quota); tunnels without
limits carry None and pay one attribute read per request. Windows are fixed, not sliding,
and wall-clock: the UTC minute for requests, the UTC day for bytes (in + out). Both are
counted per account, not per tunnel: every tunnel of a user (or of an anonymous address)
shares one `Usage` (relay/pool/usage.py), kept across reconnects, restarts and nodes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from typing import Protocol

from relay.asgi_types import Scope
from relay.headers import address_key as _address_key
from relay.headers import client_ip, is_trusted_proxy, normal_ip
from relay.pool.usage import Usage
from relay.protocol import DAY_S, MINUTE_S, REGISTRATION_OWNERS_KEPT, VISITOR_KEYS_CACHED
from relay.request_settings import request_settings


def address_key(ip: str) -> str:
    """What counts as one visitor for per-address limits (RELAY_MAX_CONNECTIONS_PER_IP,
    RELAY_WS_MAX_PER_VISITOR): one spelling per address, IPv6 per RELAY_IPV6_PREFIX network,
    the same key owners are counted by (tunnels/auth.py)."""
    return _address_key(ip, request_settings().ipv6_prefix)


def visitor_key(scope: Scope) -> str:
    """address_key of the request's visitor (relay.headers.client_ip: through a trusted
    proxy, the address it names; through a cluster hop, the visitor's). Called per request
    for its share of the tunnel's sockets, so a direct peer's key is remembered."""
    client = scope.get("client") or ("", 0)
    peer = client[0] or ""
    if is_trusted_proxy(peer):
        return address_key(client_ip(scope))
    return _peer_key(peer, request_settings().ipv6_prefix)


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
    def visitors_connected(self) -> int: ...  # TCP visitors open, copiers pacing: in use

    def close_idle(self, reason: str) -> None: ...


Refusal = tuple[int, str, int | None]  # status, message, Retry-After seconds


class DayUsed(Exception):
    """The account's bytes for today ran out while a body was passing (`Quota.spend`): the
    exchange stops there (relay/proxy/exchange.py `count`); `refusal` is what a visitor
    without a response yet is answered (the day's 429)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal[1])
        self.refusal = refusal


class Quota:
    __slots__ = (
        "per_minute",
        "per_day_bytes",
        "max_body_bytes",
        "idle_timeout_s",
        "plan",
        "usage",
        "idle_timer",
    )

    def __init__(
        self,
        per_minute: int,
        per_day_bytes: int,
        max_body_bytes: int,
        idle_timeout_s: int,
        plan: str = "",
        usage: Usage | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.per_day_bytes = per_day_bytes
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.plan = plan
        # The account's use, shared with its other tunnels (relay.face.register gives it the
        # account's); a quota made alone counts for its tunnel. None: nothing to count.
        if usage is None and (per_minute or per_day_bytes):
            usage = Usage("", time.time())
        self.usage = usage
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.per_minute or self.per_day_bytes or self.max_body_bytes or self.idle_timeout_s
        )

    @property
    def counts(self) -> bool:
        """Whether the plan limits what the account uses (requests or bytes)."""
        return bool(self.per_minute or self.per_day_bytes)

    def admit(self, tunnel: Metered, scope: Scope, now: float) -> Refusal | None:
        """None to let the request through (counted for its account), else what to answer."""
        if self.max_body_bytes:
            length = _body_length(scope)
            if length is not None and length > self.max_body_bytes:
                return (
                    413,
                    f"The tunnel {tunnel.name} accepts request bodies of at most "
                    f"{self.max_body_bytes} bytes.",
                    None,
                )
        return self.take_request(time.time())

    def admit_connection(self, tunnel: Metered, now: float) -> bool:
        """A TCP tunnel's visitor connection counts as a request: whether it may open (a
        TCP client cannot be told why not, so no message)."""
        return self.take_request(time.time()) is None

    def take_request(self, wall: float) -> Refusal | None:
        """Count one request of the account, or say which limit it reached: integer
        compares on in-memory counters (the store's totals plus this node's since)."""
        usage = self.usage
        if usage is None:
            return None
        usage.roll(wall)  # once: the windows holding `wall`
        if self.per_day_bytes and (
            usage.stored_day_bytes + usage.local_day_bytes >= self.per_day_bytes
        ):
            return self.day_refusal(wall)
        if self.per_minute and (
            usage.stored_minute_requests + usage.local_minute_requests >= self.per_minute
        ):
            return self.minute_refusal(wall)
        usage.count_request()
        return None

    def reached(self, wall: float) -> str:
        """The refusal a visitor would get now for the account's limits ("" for none), counting
        nothing (the tunnel's status, which our lt polls)."""
        usage = self.usage
        if usage is None:
            return ""
        if self.per_day_bytes and usage.day_bytes(wall) >= self.per_day_bytes:
            return self.day_refusal(wall)[1]
        if self.per_minute and usage.minute_requests(wall) >= self.per_minute:
            return self.minute_refusal(wall)[1]
        return ""

    def add_bytes(self, size: int) -> None:
        if self.usage is not None:
            self.usage.add_bytes(size)

    def spend(self, size: int) -> bool:
        """Count `size` bytes of a body piece about to pass, unless the account's bytes for
        today are used up already (False: it must not pass). Check and count go together, with
        nothing awaited between them, so however many copiers of the account run on this node,
        only the piece that crosses the limit passes it. Integer compares, per piece."""
        if self.over_day_bytes():
            return False
        self.add_bytes(size)
        return True

    def over_day_bytes(self, tunnel: Metered | None = None, wall: float | None = None) -> bool:
        """Whether the account's bytes for today ran out: the cheap check per chunk of a TCP
        connection and per WebSocket message."""
        if not self.per_day_bytes or self.usage is None:
            return False
        wall = time.time() if wall is None else wall
        return self.usage.day_bytes(wall) >= self.per_day_bytes

    def _plan(self) -> str:
        return f" (plan {self.plan})" if self.plan else ""

    def minute_refusal(self, wall: float) -> Refusal:
        resets = (int(wall // MINUTE_S) + 1) * int(MINUTE_S)
        wait = max(1, resets - int(wall))
        return (
            429,
            f"This tunnel's account has used its {self.per_minute} requests for this minute"
            f"{self._plan()}; it resets at {_clock(resets)} UTC, in {wait} s.",
            wait,
        )

    def day_refusal(self, wall: float) -> Refusal:
        resets = (int(wall // DAY_S) + 1) * int(DAY_S)
        wait = max(1, resets - int(wall))
        return (
            429,
            f"This tunnel's account has used its {_size(self.per_day_bytes)} of traffic for "
            f"today{self._plan()}; it resets at {_clock(resets)} UTC, in {_duration(wait)}.",
            wait,
        )

    def day_close_reason(self) -> str:
        """A WebSocket's close reason when the day's bytes run out (at most 123 bytes)."""
        return f"daily traffic allowance of {_size(self.per_day_bytes)} used{self._plan()}"[:120]

    # --- idle timeout -----------------------------------------------------------------------
    def start_idle_timer(self, tunnel: Metered) -> None:
        if self.idle_timeout_s and self.idle_timer is None:
            self._schedule(tunnel, float(self.idle_timeout_s))

    def _schedule(self, tunnel: Metered, delay: float) -> None:
        # In an empty context: started by a registration, the timer would keep that whole
        # request alive for as long as the tunnel lives (relay/pool/ports.py).
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(
            delay, self.check_idle, tunnel, context=contextvars.Context()
        )

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


def _clock(wall: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(wall))


def _duration(seconds: int) -> str:
    minute = int(MINUTE_S)
    if seconds < 2 * minute:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // minute, minute)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


_UNITS = ("KiB", "MiB", "GiB", "TiB")


def _size(count: int) -> str:
    """A size as the site and lt say it (tunnels/sizes.py's `binary`, which the relay cannot
    import; tests/structure checks the three agree): binary units, one decimal under 10."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    shown = f"{int(value + 0.5)}" if value >= 10 else f"{value:.1f}"
    return f"{shown} {_UNITS[unit]}"


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
