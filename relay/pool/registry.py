"""The relay's in-memory registry of live tunnels.

One per process, bound to the running event loop. It hands out names and pool ports
(relay/pool/ports.py), keeps a name for its owner through the reconnect grace period, and
expires tunnels whose client is gone. It owns three parts, each an object with its own
state that sees the registry through a small Protocol: the Flusher, counters written to the
database in batches, never per request (relay/pool/flush.py); the NameHolders, who holds a
name (relay/pool/holders.py); the Drain, requests in flight and the stop
(relay/pool/draining.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from typing import Any

from django.conf import settings as django_settings
from django.db import IntegrityError, OperationalError

from relay import protocol
from relay.log_events import TUNNEL_CLOSED, TUNNEL_OPENED, tunnel_fields
from relay.pool.access import Access, VisitorRules
from relay.pool.draining import Drain
from relay.pool.errors import RegistrationError
from relay.pool.flush import Flusher
from relay.pool.holders import NameHolders
from relay.pool.hooks import ClusterHooks
from relay.pool.ports import listen
from relay.pool.quota import RegistrationRate
from relay.pool.sanctions import Sanctions
from relay.pool.tcp_ports import TcpWanted, open_side, refuse_if_off, refuse_past_limit
from relay.pool.tcp_side import TcpSide
from relay.pool.tunnel import Tunnel
from relay.pool.usage import UsageBook, account_of
from relay.protocol import ABANDONED_ROW_WAIT_S, TIMER_SLACK_S
from relay.records import LiveLimitReached

logger = logging.getLogger(__name__)


def _in_use_message(tunnel: Tunnel) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(tunnel.registered_wall))
    sockets = tunnel.connected_sockets
    state = f"{sockets} pool socket{'s' if sockets != 1 else ''}" if sockets else "connecting"
    held = (
        f"The subdomain {tunnel.name!r} is in use by another client of yours, connected from "
        f"{tunnel.client_ip} since {since} ({state}). Stop that client first (a client whose "
        "network went away is noticed within about 30 s)"
    )
    if tunnel.user_id is None:  # anonymous: its owner is an address, shared behind a NAT
        return (
            f"{held}. An anonymous tunnel is never taken over while its client is "
            "connected; registered with an API token (lt --token), tunnelsite's own lt can "
            f"take a name over with `lt --subdomain {tunnel.name} --takeover`."
        )
    return (
        f"{held}, or, with tunnelsite's own lt, take the name over with "
        f"`lt --subdomain {tunnel.name} --takeover` (the other client is then disconnected)."
    )


def _database_unavailable(exc: Exception) -> RegistrationError:
    logger.warning("registration failed, database unavailable: %s", exc)
    return RegistrationError(
        503, "The relay's database is busy or unavailable; try again in a moment."
    )


class Registry:
    def __init__(self, settings: Any = django_settings) -> None:
        self.settings = settings
        self.tunnels: dict[str, Tunnel] = {}
        self.accepting = True  # False once draining: registrations are refused
        self.started_at = time.time()
        self.cluster: ClusterHooks | None = None  # scale-out: set by the runner on a named node
        self.registrations = RegistrationRate(  # per owner
            settings.RELAY_REGISTRATION_BURST, settings.RELAY_REGISTRATIONS_PER_MINUTE
        )
        self.flusher = Flusher(self, settings)
        self.usage = UsageBook(settings, self._accounts)  # account quotas (relay/pool/usage.py)
        self.holders = NameHolders(self)
        self.draining = Drain(self)
        self.sanctions = Sanctions()  # an operator's cool-downs and suspended names
        # Session-row writes of registrations abandoned while they ran, by name (`_abandoned`).
        self._abandoned_rows: dict[str, asyncio.Future[int]] = {}

    # --- registration ---------------------------------------------------------------------
    async def register(
        self,
        requested: str | None,
        owner: str,
        client_ip: str,
        max_conn_count: int,
        *,
        user_id: int | None = None,  # who the session row belongs to
        token_id: int | None = None,
        max_live: int = 0,  # scale-out: the owner's live-tunnel limit, counted cluster-wide
        client_id: str = "",  # our lt's per-run id (protocol.CLIENT_ID_HEADER); "" for npm
        takeover: bool = False,  # close the name's live client first (lt --takeover)
        reserved: frozenset[str] = frozenset(),  # the site's route names (tunnels/route_names.py)
        raw_pool: bool = True,  # open a raw pool listener (False: our lt, which upgrades)
        pool_secret: str = "",  # our lt's last pool secret for this name (an address change)
        rules: VisitorRules | None = None,  # who may visit (tunnels/access.py)
        tcp: TcpWanted | None = None,  # a TCP tunnel (lt tcp): its port (relay/pool/tcp_ports.py)
        plan: str = "",  # a new tunnel's plan, for good (/metrics' label); a reclaim keeps its own
    ) -> Tunnel:
        # Built before the name is claimed or reclaimed, and set before any await: a visitor
        # who arrives while the registration awaits its database row meets the gate too.
        # A reclaimed tunnel takes this registration's rules (lt's flags, the plan's or the
        # reserved name's policy may have changed). The plain passwords end with `rules`.
        access = None if rules is None or rules.empty else Access(rules, owner)
        if tcp is not None:
            refuse_if_off(self.settings)
        if not self.accepting:
            raise RegistrationError(503, "This relay is shutting down; try again in a moment.")
        # A suspended name, token or user; the name's Disconnect cool-down, for anyone.
        refusal = self.sanctions.refusal(requested, "", user_id=user_id, token_id=token_id)
        if refusal is not None:
            raise refusal
        if client_id:
            self.holders.refuse_if_taken_over(client_id)
        avoid_port = 0
        existing: Tunnel | None = None
        if tcp is not None and tcp.port and requested is None:
            requested = self._own_tunnel_on_port(tcp.port, owner)
        if requested is not None:
            existing = self.tunnels.get(requested)
            if existing is not None and (existing.tcp is None) != (tcp is None):
                kind = "a TCP" if existing.tcp is not None else "an HTTP"
                raise RegistrationError(
                    409,
                    f"The name {requested!r} is held by {kind} tunnel; pick another name, "
                    "or leave it out for a random one.",
                )
            if existing is not None:
                proves = existing.user_id is None or existing.owner == owner  # a token's user
                if (
                    proves
                    and existing.session_id is not None
                    and existing.secret_matches(pool_secret)
                ):
                    # Our lt again, known by its secret from wherever it is now (a laptop that
                    # changed networks): it keeps the tunnel and its URL; an anonymous one's
                    # owner becomes its new address, so the old address owns it no more. A
                    # token holder's tunnel stays its user's: the secret of another user's
                    # tunnel opens nothing.
                    existing.access = access
                    self.holders.move_owner(existing, owner, user_id)
                    tunnel = self.holders.reclaim(existing, client_ip, client_id)
                    return await self._raw_pool_for(tunnel, raw_pool)
                if existing.owner != owner:
                    raise RegistrationError(
                        409,
                        f"The subdomain {requested!r} is in use by another client. "
                        "Pick another name, or leave it out for a random one.",
                    )
                if existing.session_id is None:  # its first registration is still running
                    raise RegistrationError(
                        409, f"The subdomain {requested!r} is being registered; try again."
                    )
                connected = existing.client_connected(time.monotonic())
                if not connected or self.holders.reconnecting_client(existing, client_id):
                    # the owner within the grace period, or our lt reconnecting
                    existing.access = access
                    tunnel = self.holders.reclaim(existing, client_ip, client_id)
                    return await self._raw_pool_for(tunnel, raw_pool)
                if not takeover or existing.user_id is None:  # anonymous: never taken over
                    raise RegistrationError(409, _in_use_message(existing))
                # A new pool port: the old client's own reconnects must not reach the new one.
                avoid_port = existing.port
                self.holders.take_over(existing, client_ip, client_id)
            name = requested
        else:
            name = self._random_name(reserved)
        if requested is None or existing is None:
            # A new tunnel: the owner's Disconnect cool-down (never its own live tunnel's
            # reclaim or takeover, which returned or went on above).
            refusal = self.sanctions.refusal(requested, owner)  # (the name: for the message)
            if refusal is not None:
                raise refusal
        if len(self.tunnels) >= self.settings.RELAY_MAX_TUNNELS:
            raise RegistrationError(503, "This relay has no room for more tunnels right now.")
        if tcp is not None:  # (a reclaim returned above: it is not counted)
            if tcp.max_live:  # a crashed lt restarted within the grace gives way, as HTTP's
                self.holders.release_for_owner(owner, tcp.max_live, tcp_only=True)
            refuse_past_limit(self.tunnels.values(), owner, tcp.max_live)
        tunnel = Tunnel(
            name=name,
            owner=owner,
            client_ip=client_ip,
            max_conn_count=max_conn_count,
            registry=self,
            user_id=user_id,
            token_id=token_id,
            client_id=client_id,
            plan=plan,
        )
        tunnel.access = access
        if tcp is not None:  # a TCP tunnel from the start (its port comes below): its HTTP
            tunnel.tcp = TcpSide(0)  # visitors are told so, and it counts toward max_live
        self.tunnels[name] = tunnel  # claim the name before the first await
        try:
            # The old session's row must be closed before a new one; on a node (max_live),
            # rows released to make room must be too, or the cluster-wide count sees them.
            earlier = self._abandoned_rows.get(name)
            if earlier is not None:  # its row, if written, goes to `pending` first
                await asyncio.wait([earlier], timeout=ABANDONED_ROW_WAIT_S)
            pending = self.flusher.pending
            if any(t.name == name for t in pending) or (max_live and pending):
                try:
                    await self.flusher.flush()
                except OperationalError as exc:
                    raise _database_unavailable(exc) from None
            if tcp is not None:  # its public port, before the row (which records it)
                tunnel.tcp = await open_side(tunnel, self.settings, self.tunnels.values(), tcp)
            if raw_pool:
                tunnel.server = await listen(tunnel, self.settings, self.tunnels, avoid_port)
                tunnel.port = tunnel.server.sockets[0].getsockname()[1]
            try:
                # Shielded: a client that leaves cancels this registration, but not the insert
                # already sent to the database, whose row would stay live with no tunnel, the
                # name taken for good. A row written after all is closed at once (`_abandoned`).
                opening = asyncio.ensure_future(
                    self.holders.open_session(tunnel, max_live, takeover)
                )
                try:
                    tunnel.session_id = await asyncio.shield(opening)
                except asyncio.CancelledError:
                    # Before any waiter's wake-up: a registration of the name waiting on it
                    # finds the row in `pending`, as its callbacks run in this order.
                    opening.add_done_callback(functools.partial(self._abandoned, tunnel))
                    self._abandoned_rows[tunnel.name] = opening
                    raise
                if tunnel.closed:  # scale-out: released to its owner's newer registration
                    self.flusher.pending.append(tunnel)  # while the row was being written
                    if self.cluster is not None:
                        self.cluster.flush_soon()
                    raise IntegrityError("released while registering")
            except IntegrityError:
                # Closed by an operator's Suspend or Disconnect while the row was written:
                # that is why, not a name in use.
                sanction = self.sanctions.refusal(name, "", user_id=user_id, token_id=token_id)
                if tunnel.closed and sanction is not None:
                    raise sanction from None
                raise RegistrationError(
                    409, f"The subdomain {name!r} is in use; pick another name."
                ) from None
            except OperationalError as exc:  # locked (SQLite) or unreachable database
                raise _database_unavailable(exc) from None
            except LiveLimitReached as exc:  # scale-out
                raise RegistrationError(
                    429,
                    f"You already have {exc.limit} live tunnel{'s' if exc.limit != 1 else ''}"
                    ", the most your plan allows. Close one (stop its client) first.",
                ) from None
        except BaseException:
            if self.tunnels.get(name) is tunnel:
                del self.tunnels[name]
            tunnel.close("registration failed")
            raise
        self.schedule_expiry(tunnel)
        if self.cluster is not None:  # scale-out: tell the other nodes who owns the name
            self.cluster.tunnel_opened(tunnel)
        opened = tunnel_fields(tunnel, TUNNEL_OPENED, _node(self.settings))
        if tunnel.tcp is not None:
            opened["tcp_port"] = tunnel.tcp.port
            logger.info(
                "TCP tunnel %s opened for %s on port %d",
                name,
                client_ip,
                tunnel.tcp.port,
                extra=opened,
            )
        elif tunnel.server is not None:
            opened["pool_port"] = tunnel.port
            logger.info(
                "tunnel %s opened for %s on pool port %d",
                name,
                client_ip,
                tunnel.port,
                extra=opened,
            )
        else:
            logger.info(
                "tunnel %s opened for %s (upgraded pool connections)",
                name,
                client_ip,
                extra=opened,
            )
        return tunnel

    def _own_tunnel_on_port(self, port: int, owner: str) -> str | None:
        """The name of `owner`'s TCP tunnel on `port` whose client is gone (its grace
        period), so that `lt tcp --remote-port N` run again after a crash reclaims it like a
        name: a new lt process has no pool secret and asks for no name, and was told
        "Port N is in use by another tunnel" (exit 5) until the grace ran out."""
        for tunnel in self.tunnels.values():
            if tunnel.tcp is not None and tunnel.tcp.port == port:
                gone = not tunnel.client_connected(time.monotonic())
                return tunnel.name if tunnel.owner == owner and gone else None
        return None

    async def _raw_pool_for(self, tunnel: Tunnel, raw_pool: bool) -> Tunnel:
        """A reclaimed tunnel whose new client needs a raw pool port (the npm client after our
        lt) gets a listener; one that has a listener keeps it, unless its new client upgrades
        its pool connections (our lt after the npm client): then the listener closes, as
        nothing may reach the tunnel by its address alone any more."""
        if not raw_pool and tunnel.server is not None:
            tunnel.server.close()
            tunnel.server = None
            tunnel.port = 0  # (reclaim closed the previous client's idle sockets)
        if raw_pool and tunnel.server is None:
            try:
                tunnel.server = await listen(tunnel, self.settings, self.tunnels)
            except BaseException:
                self.close(tunnel, "registration failed")
                raise
            tunnel.port = tunnel.server.sockets[0].getsockname()[1]
        return tunnel

    def _random_name(self, reserved: frozenset[str] = frozenset()) -> str:
        """A free random name that is never a reserved one (RELAY_RESERVED_NAMES, routes)."""
        while True:
            name = protocol.random_subdomain()
            if (
                name not in self.tunnels
                and name not in reserved
                and name not in self.settings.RELAY_RESERVED_NAMES
                and not self.sanctions.holds(name)
            ):
                return name

    # --- expiry -----------------------------------------------------------------------------
    def schedule_expiry(self, tunnel: Tunnel) -> None:
        """One timer per tunnel, at the end of its grace period (a flapping client must not
        pile them up); a socket attaching or the tunnel closing cancels it. In an empty
        context: scheduled by a registration, it would keep that whole request alive
        (relay/pool/ports.py)."""
        tunnel.cancel_expiry()
        loop = asyncio.get_running_loop()
        tunnel.expiry = loop.call_later(
            self.settings.RELAY_GRACE_S,
            self._expire_if_offline,
            tunnel,
            context=contextvars.Context(),
        )

    def _expire_if_offline(self, tunnel: Tunnel) -> None:
        tunnel.expiry = None
        if tunnel.closed or tunnel.offline_since is None:
            return
        if time.monotonic() - tunnel.offline_since >= self.settings.RELAY_GRACE_S - TIMER_SLACK_S:
            self.close(tunnel, "client gone")
        else:
            self.schedule_expiry(tunnel)

    def _abandoned(self, tunnel: Tunnel, opening: asyncio.Future[int]) -> None:
        """The session row of a registration cancelled while it was written (its client
        left): if it was written after all, it is closed by the next flush (the name's next
        registration runs that flush first). The tunnel was closed when it was cancelled."""
        if self._abandoned_rows.get(tunnel.name) is opening:
            del self._abandoned_rows[tunnel.name]
        if opening.cancelled() or opening.exception() is not None:
            return  # no row (the exception, retrieved here, was the registration's to raise)
        tunnel.session_id = opening.result()
        tunnel.dirty = True
        self.flusher.pending.append(tunnel)

    def close(self, tunnel: Tunnel, reason: str) -> None:
        if self.tunnels.get(tunnel.name) is tunnel:
            del self.tunnels[tunnel.name]
        if not tunnel.closed:
            tunnel.close(reason)
            self.flusher.pending.append(tunnel)
            if self.cluster is not None:  # scale-out: free the name cluster-wide at once
                self.cluster.tunnel_closed(tunnel)
            if tunnel.session_id is None:
                return  # closed during its registration: it never opened, so no event closes it
            closed = tunnel_fields(tunnel, TUNNEL_CLOSED, _node(self.settings))
            closed["reason"] = reason
            closed["requests"] = tunnel.requests
            closed["bytes_in"], closed["bytes_out"] = tunnel.bytes_in, tunnel.bytes_out
            logger.info("tunnel %s closed: %s", tunnel.name, reason, extra=closed)

    def get(self, name: str) -> Tunnel | None:
        return self.tunnels.get(name)

    def status(self) -> dict[str, Any]:
        return {
            "tunnels": len(self.tunnels),
            "sockets": sum(t.connected_sockets for t in self.tunnels.values()),
            "in_flight": self.draining.in_flight,
            "tasks": len(asyncio.all_tasks()),  # a leak shows here first
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    # --- the parts' methods that other modules call (relay/run, relay/proxy, relay/cluster,
    # tunnels/, tests); inside relay/pool the parts are called directly ---------------------
    @property
    def in_flight(self) -> int:
        return self.draining.in_flight

    def request_started(self) -> None:
        self.draining.request_started()

    def request_finished(self) -> None:
        self.draining.request_finished()

    async def drain(self, timeout: float) -> bool:
        return await self.draining.drain(timeout)

    async def shutdown(self, reason: str = "relay stopped") -> None:
        await self.draining.shutdown(reason)
        await self.usage.stop()  # the accounts' last counts, so a restart keeps them

    def _accounts(self) -> set[str]:
        return {account_of(t.owner) for t in self.tunnels.values()}

    def start(self) -> None:
        self.flusher.start()

    async def flush(self) -> int:
        return await self.flusher.flush()

    async def prune_sessions(self, now: float | None = None) -> int:
        return await self.flusher.prune_sessions(now)

    async def close_tunnels_of_unusable_tokens(self) -> int:
        return await self.flusher.close_tunnels_of_unusable_tokens()

    def remember_taken_over(self, tunnel: Tunnel, by: str) -> None:
        self.holders.remember_taken_over(tunnel, by)

    def release_for_owner(self, owner: str, limit: int) -> bool:
        return self.holders.release_for_owner(owner, limit)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process's registry, created on first use inside the running loop."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def reset_registry() -> None:
    """For tests: forget the registry (its tunnels must already be closed)."""
    global _registry
    _registry = None


def _node(settings: Any) -> str:
    """This node's name for log lines ("" on a single relay, or a test's settings double)."""
    return str(getattr(settings, "RELAY_NODE_NAME", "") or "")
