"""A live tunnel in the relay's memory: its pool listener, its sockets and its counters.

Its pool sockets attach (from the client's registered address, up to max_conn_count) and
detach; the last one gone starts the reconnect grace period. How visitors borrow them is
relay/pool/borrowing.py; a tunnel also admits WebSockets against its sockets, and closes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from relay import protocol
from relay.headers import normal_ip
from relay.pool import bandwidth
from relay.pool.access import Access
from relay.pool.borrowing import Borrowing, NoSocket, sockets_beyond_spare
from relay.pool.captures import TunnelCaptures, forget
from relay.pool.quota import Quota
from relay.pool.socket import PoolSocket
from relay.pool.tcp_side import TcpSide
from relay.protocol import RETRY_AFTER_FULL_S
from relay.stats import STATS

logger = logging.getLogger(__name__)


class Home(Protocol):
    """What a tunnel needs of the registry that holds it (relay/pool/registry.py)."""

    settings: Any  # django.conf.settings, or a test's stand-in

    def schedule_expiry(self, tunnel: Tunnel) -> None: ...

    def close(self, tunnel: Tunnel, reason: str) -> None: ...


@dataclass(eq=False, slots=True)
class Tunnel(Borrowing):
    name: str
    owner: str  # "ip:<addr>" for anonymous tunnels, "user:<id>" for token holders
    client_ip: str
    max_conn_count: int
    registry: Home
    server: asyncio.Server | None = None
    port: int = 0
    session_id: int | None = None  # its tunnels.models.TunnelSession row
    user_id: int | None = None  # the token's user (None: anonymous)
    token_id: int | None = None  # the ApiToken it was opened with
    quota: Quota | None = None  # plan limits (relay/pool/quota.py); None: no limits
    # The owner's bandwidth (relay/pool/bandwidth.py), shared by its tunnels; None: no limit.
    shaper: bandwidth.Shaper | None = None
    pacing: int = 0  # its copiers waiting on the owner's bandwidth now (bandwidth.wait)
    # Who may visit (relay/pool/access.py): None when anyone may and no warning page is shown.
    access: Access | None = None
    # The request inspector's captures (relay/pool/captures.py): None when its plan keeps none.
    captures: TunnelCaptures | None = None
    # A TCP tunnel's public port and visitors (relay/pool/tcp_side.py); None: an HTTP tunnel.
    tcp: TcpSide | None = None
    connections: set[PoolSocket] = field(default_factory=set)
    idle: list[PoolSocket] = field(default_factory=list)
    # A list, not a deque: an empty deque costs 760 bytes per tunnel, and the queue is
    # bounded by RELAY_MAX_WAITERS, so popping from the front stays cheap.
    waiters: list[tuple[asyncio.Future[PoolSocket], str]] = field(default_factory=list)
    # Sockets each visitor address (relay.pool.quota.address_key) holds now, for its share.
    held: dict[str, int] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.monotonic)
    offline_since: float | None = field(default_factory=time.monotonic)
    closed: bool = False
    close_reason: str = ""
    # The plan it was opened under (relay.face.register): /metrics' `plan` label, fixed for
    # its life (a reclaim under another plan keeps it; its limits are the new plan's), so its
    # requests and bytes never move from one plan's counters to another's.
    plan: str = ""
    # Counters: kept here, flushed to the database in batches by the registry; added to
    # only through `carried` and `carried_request` (tests/structure checks it).
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    peak_sockets: int = 0
    dirty: bool = True
    in_flight: int = 0
    expiry: asyncio.TimerHandle | None = None  # the grace-period timer while offline
    # Who holds the name now: our lt's per-run id (empty for the npm
    # client), when it registered (monotonic, and wall clock for messages), and whether a
    # pool socket has attached since (until then it counts as connecting).
    client_id: str = ""
    # A raw-pipe client's app sent bytes past an answer: its sockets are never reused again.
    distrusted: bool = False
    registered_at: float = field(default_factory=time.monotonic)
    registered_wall: float = field(default_factory=time.time)
    attached_since_registration: bool = False
    # Open WebSockets per visitor address (each holds a pool socket while open); None
    # until the first one, as most tunnels never carry any.
    websockets: dict[str, int] | None = None
    # Binds our lt's upgraded pool connections to this registration (relay/edge/pool_upgrade.py):
    # made anew at each registration of the name, never logged, never in repr.
    pool_secret: str = field(default="", repr=False)
    # The upgraded connection attaching right now: bound by the secret, not by its address.
    upgrading: PoolSocket | None = field(default=None, repr=False)

    # --- pool membership (called by PoolSocket) ----------------------------------------
    def attach(self, conn: PoolSocket) -> bool:
        settings = self.registry.settings
        if self.closed:
            return False
        if (
            conn is not self.upgrading
            and not settings.RELAY_POOL_ALLOW_ANY_IP
            and not _same_ip(conn.peer_ip, self.client_ip)
        ):
            logger.warning(
                "refused pool socket for %s from %s (registered by %s)",
                self.name,
                conn.peer_ip,
                self.client_ip,
            )
            return False
        if len(self.connections) >= self.max_conn_count:
            logger.debug("refused pool socket for %s: already %d", self.name, self.max_conn_count)
            return False
        self.connections.add(conn)
        self.attached_since_registration = True
        self.peak_sockets = max(self.peak_sockets, len(self.connections))
        self.offline_since = None
        self.cancel_expiry()
        self.dirty = True
        self.release(conn)
        return True

    def new_socket(self) -> PoolSocket:
        """A pool socket for a connection to its raw pool listener (relay/pool/ports.py)."""
        return PoolSocket(self, self.registry.settings.RELAY_MAX_HEADER_BYTES)

    def detach(self, conn: PoolSocket) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        self.dirty = True
        if not self.connections and not self.closed:
            self.offline_since = time.monotonic()
            self.registry.schedule_expiry(self)

    @property
    def connected_sockets(self) -> int:
        return len(self.connections)

    def client_connected(self, now: float) -> bool:
        """Whether the client that registered last is still there: it has pool sockets, or
        it registered moments ago and is still opening them (protocol.CONNECTING_S). A tunnel
        whose client is gone only waits out its grace period for its owner."""
        if self.connections:
            return True
        return not self.attached_since_registration and (
            now - self.registered_at < protocol.CONNECTING_S
        )

    def __post_init__(self) -> None:
        self._strict_if_raw()
        self.new_pool_secret()

    def new_pool_secret(self) -> None:
        """A fresh secret: connections opened with the previous one can no longer attach."""
        self.pool_secret = secrets.token_hex(protocol.POOL_SECRET_BYTES)

    def secret_matches(self, candidate: str) -> bool:
        """Whether `candidate` is this registration's pool secret (in constant time)."""
        if not candidate or not self.pool_secret:
            return False
        return hmac.compare_digest(candidate.encode(), self.pool_secret.encode())

    def _strict_if_raw(self) -> None:
        """RELAY_RAW_POOL_REUSE=false: a raw-pipe (npm) client's pool sockets carry one
        exchange each, so no late answer of its app can reach another visitor (the
        operator's switch for the keep-alive limit that `distrust` only narrows)."""
        if not self.client_id and not self.registry.settings.RELAY_RAW_POOL_REUSE:
            self.distrusted = True

    def registered_by(self, client_ip: str, client_id: str) -> None:
        """A (re-)registration of this tunnel: the client that holds it from now on (its
        address reaches the session row with the next flush)."""
        self.client_ip = client_ip
        self.dirty = True
        self.client_id = client_id
        self._strict_if_raw()
        self.registered_at = time.monotonic()
        self.registered_wall = time.time()
        self.attached_since_registration = False  # connecting, until its first socket
        self.new_pool_secret()

    # --- WebSockets (they hold a socket for as long as they stay open) ----------------------
    def admit_websocket(self, visitor: str, spare: int, per_visitor: int) -> None:
        """Count a visitor's WebSocket against the tunnel's sockets, or raise NoSocket.

        WebSockets may hold all of the sockets the client opens but `spare`
        (RELAY_SPARE_SOCKETS; at least one WebSocket), so plain requests always find a
        socket however many idle WebSockets stay open; and one visitor address at most
        `per_visitor` of them (its share of all sockets is kept by `acquire`)."""
        counts = self.websockets if self.websockets is not None else {}
        allowed = sockets_beyond_spare(self.max_conn_count, len(self.connections), spare)
        if sum(counts.values()) >= allowed:
            STATS.websockets_full += 1
            raise NoSocket(
                503,
                f"The tunnel {self.name} already carries the {allowed} WebSockets it allows "
                "(its other connections are kept for plain requests); try again later.",
                retry_after=RETRY_AFTER_FULL_S,
            )
        if counts.get(visitor, 0) >= per_visitor:
            STATS.websockets_full += 1
            raise NoSocket(
                503,
                f"You already have {per_visitor} WebSockets open to the tunnel {self.name}; "
                "close one first.",
                retry_after=RETRY_AFTER_FULL_S,
            )
        counts[visitor] = counts.get(visitor, 0) + 1
        self.websockets = counts

    def websocket_closed(self, visitor: str) -> None:
        counts = self.websockets
        if counts is None or visitor not in counts:
            return
        counts[visitor] -= 1
        if counts[visitor] <= 0:
            del counts[visitor]
        if not counts:
            self.websockets = None

    def distrust(self, how: str) -> None:
        """A raw-pipe client (npm) passed on bytes its app sent past an answer: never reuse
        this tunnel's sockets again, since a late answer cannot be told from the next
        visitor's. Our lt frames each exchange and watches its app itself (a no-op)."""
        if self.client_id or self.distrusted:
            return
        self.distrusted = True
        logger.warning(
            "tunnel %s: its local app sent bytes after a response (%s); its pool sockets "
            "are no longer reused (one per request from now on)",
            self.name,
            how,
        )
        for conn in [conn for conn in self.idle if conn.used]:
            conn.abort()  # kept after an earlier answer: a late one may still come

    # --- traffic (every place that counts a tunnel's requests and bytes calls these) ---------
    def carried(self, bytes_in: int, bytes_out: int) -> None:
        """Bytes carried between visitors and the app. An exchange still running when the
        tunnel closed adds them after close kept its totals for /metrics: they go to its
        plan's totals too (relay/stats.py), or the counters would lose them."""
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        if self.closed:
            STATS.carried_late(self.plan, 0, bytes_in, bytes_out)

    def carried_request(self) -> None:
        """A request (an HTTP exchange, a WebSocket, a TCP connection) that reached a pool
        socket: counted once, however many sockets it tries."""
        self.requests += 1
        if self.closed:
            STATS.carried_late(self.plan, 1, 0, 0)

    # --- lifecycle --------------------------------------------------------------------------
    def cancel_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    @property
    def visitors_connected(self) -> int:
        """A TCP tunnel's visitor connections open now, and the copiers of any tunnel waiting
        on its owner's bandwidth (`pacing`): while any is, the tunnel is in use, bytes or not
        (its quota's idle timeout). The plan's own pacing is not idleness; a wait's end
        marks the tunnel active (bandwidth.wait), so a paced transfer between two waits is
        not idle either."""
        return self.pacing + (self.tcp.live if self.tcp is not None else 0)

    def close_idle(self, reason: str) -> None:
        """Its quota's idle timeout ran out (relay/pool/quota.py): close it as the registry does."""
        self.registry.close(self, reason)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.cancel_expiry()
        if self.quota is not None:
            self.quota.cancel_idle_timer()
        if self.shaper is not None:
            bandwidth.owners.leave(self.shaper)  # the owner's entry goes with its last tunnel
        self.close_reason = reason
        self.dirty = True
        STATS.tunnel_closed(self)  # /metrics' totals keep what it carried
        if self.captures is not None:
            forget(self)  # the inspector's memory of it goes with it
        if self.server is not None:
            self.server.close()
        if self.tcp is not None:
            self.tcp.close(reason)  # its port is free again, its visitors disconnected
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()
        self.idle.clear()
        self.held.clear()
        while self.waiters:
            waiter, _ = self.waiters.pop(0)
            if not waiter.done():
                STATS.closed += 1
                waiter.set_exception(NoSocket(503, f"The tunnel {self.name} was closed."))


def _same_ip(a: str, b: str) -> bool:
    return normal_ip(a) == normal_ip(b)
