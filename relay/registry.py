"""The relay's in-memory registry of live tunnels.

One per process, bound to the running event loop. It hands out names and pool ports,
keeps a name for its owner through the reconnect grace period, expires tunnels whose
client is gone, and flushes counters to the database in batches (never per request).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.db import IntegrityError, OperationalError

from relay import protocol
from relay.pool import PoolConnection
from relay.tunnel import Tunnel
from tunnels import nodes, store

if TYPE_CHECKING:
    from relay.cluster import Cluster

logger = logging.getLogger(__name__)

# scale-out: reclaiming a name the same owner holds on another node. That node closes the
# tunnel and writes its row at once (milliseconds); the insert is retried every
# RECLAIM_POLL_S until then, and a node that does not answer costs the client 2 s and a 409.
RECLAIM_WAIT_S = 2.0
RECLAIM_POLL_S = 0.05


class RegistrationError(Exception):
    """A registration that cannot succeed; `status` and `message` go to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _database_unavailable(exc: Exception) -> RegistrationError:
    logger.warning("registration failed, database unavailable: %s", exc)
    return RegistrationError(
        503, "The relay's database is busy or unavailable; try again in a moment."
    )


class Registry:
    def __init__(self, settings: Any = django_settings) -> None:
        self.settings = settings
        self.tunnels: dict[str, Tunnel] = {}
        self.accepting = True
        self.in_flight = 0
        self._idle_event = asyncio.Event()
        self._idle_event.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._closed_pending: list[Tunnel] = []
        self.started_at = time.time()
        self.cluster: Cluster | None = None  # scale-out: set by the runner on a named node

    # --- registration ---------------------------------------------------------------------
    async def register(
        self,
        requested: str | None,
        owner: str,
        client_ip: str,
        max_conn_count: int,
        *,
        user_id: int | None = None,  # issue 4: who the session row belongs to
        token_id: int | None = None,
        max_live: int = 0,  # scale-out: the owner's live-tunnel limit, counted cluster-wide
    ) -> Tunnel:
        if not self.accepting:
            raise RegistrationError(503, "This relay is shutting down; try again in a moment.")
        if requested is not None:
            existing = self.tunnels.get(requested)
            if existing is not None:
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
                return self._reclaim(existing, client_ip)
            name = requested
        else:
            name = self._random_name()
        if len(self.tunnels) >= self.settings.RELAY_MAX_TUNNELS:
            raise RegistrationError(503, "This relay has no room for more tunnels right now.")
        tunnel = Tunnel(
            name=name,
            owner=owner,
            client_ip=client_ip,
            max_conn_count=max_conn_count,
            registry=self,
            user_id=user_id,
            token_id=token_id,
        )
        self.tunnels[name] = tunnel  # claim the name before the first await
        try:
            if any(t.name == name for t in self._closed_pending):
                try:
                    await self.flush()  # the old session's row must be closed before a new one
                except OperationalError as exc:
                    raise _database_unavailable(exc) from None
            tunnel.server = await self._listen(tunnel)
            tunnel.port = tunnel.server.sockets[0].getsockname()[1]
            try:
                tunnel.session_id = await self._open_session(tunnel, max_live)
                if tunnel.closed:  # scale-out: released to its owner's newer registration
                    self._closed_pending.append(tunnel)  # while the row was being written
                    if self.cluster is not None:
                        self.cluster.flush_soon()
                    raise IntegrityError("released while registering")
            except IntegrityError:
                raise RegistrationError(
                    409, f"The subdomain {name!r} is in use; pick another name."
                ) from None
            except OperationalError as exc:  # locked (SQLite) or unreachable database
                raise _database_unavailable(exc) from None
            except nodes.LiveLimitReached as exc:  # scale-out
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
        logger.info("tunnel %s opened for %s on pool port %d", name, client_ip, tunnel.port)
        return tunnel

    async def _open_session(self, tunnel: Tunnel, max_live: int) -> int:
        """Insert the session row. On a named node, when the name's live row is the same
        owner's on another node, that node is asked to release it and the insert is retried
        for up to RECLAIM_WAIT_S (scale-out); IntegrityError when the name stays taken."""
        open_row = database_sync_to_async(store.open_session)
        row = {
            "subdomain": tunnel.name,
            "client_ip": tunnel.client_ip,
            "port": tunnel.port,
            "max_sockets": tunnel.max_conn_count,
            "owner_id": tunnel.user_id,
            "token_id": tunnel.token_id,
            "max_live": max_live,
        }
        try:
            return await open_row(**row)
        except IntegrityError:
            if self.cluster is None or not await self.cluster.release(tunnel.name, tunnel.owner):
                raise
        deadline = time.monotonic() + RECLAIM_WAIT_S  # scale-out
        while True:
            await asyncio.sleep(RECLAIM_POLL_S)
            try:
                return await open_row(**row)
            except IntegrityError:
                if time.monotonic() >= deadline:
                    raise

    def _reclaim(self, tunnel: Tunnel, client_ip: str) -> Tunnel:
        """The owner asks again for its name: same tunnel, same port, fresh sockets."""
        for conn in list(tunnel.connections):
            if not conn.busy:
                conn.abort()
        tunnel.client_ip = client_ip
        if not tunnel.connections:
            tunnel.offline_since = time.monotonic()
            self.schedule_expiry(tunnel)
        logger.info("tunnel %s reclaimed by its owner from %s", tunnel.name, client_ip)
        return tunnel

    def _random_name(self) -> str:
        while True:
            name = protocol.random_subdomain()
            if name not in self.tunnels:
                return name

    async def _listen(self, tunnel: Tunnel) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        bind = self.settings.RELAY_POOL_BIND
        max_head = self.settings.RELAY_MAX_HEADER_BYTES

        def factory() -> PoolConnection:
            return PoolConnection(tunnel, max_head)

        ports = self.settings.RELAY_POOL_PORTS
        if ports is None:
            return await loop.create_server(factory, bind, 0, backlog=64)
        first, last = ports
        candidates = random.sample(range(first, last + 1), min(64, last - first + 1))
        for port in candidates:
            try:
                return await loop.create_server(factory, bind, port, backlog=64)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise RegistrationError(503, "No free pool port on this relay; try again later.")

    # --- expiry -----------------------------------------------------------------------------
    def schedule_expiry(self, tunnel: Tunnel) -> None:
        """One timer per tunnel, at the end of its grace period (a flapping client must not
        pile them up); a socket attaching or the tunnel closing cancels it."""
        tunnel.cancel_expiry()
        loop = asyncio.get_running_loop()
        tunnel.expiry = loop.call_later(
            self.settings.RELAY_GRACE_S, self._expire_if_offline, tunnel
        )

    def _expire_if_offline(self, tunnel: Tunnel) -> None:
        tunnel.expiry = None
        if tunnel.closed or tunnel.offline_since is None:
            return
        if time.monotonic() - tunnel.offline_since >= self.settings.RELAY_GRACE_S - 0.01:
            self.close(tunnel, "client gone")
        else:
            self.schedule_expiry(tunnel)

    def close(self, tunnel: Tunnel, reason: str) -> None:
        if self.tunnels.get(tunnel.name) is tunnel:
            del self.tunnels[tunnel.name]
        if not tunnel.closed:
            tunnel.close(reason)
            self._closed_pending.append(tunnel)
            if self.cluster is not None:  # scale-out: free the name cluster-wide at once
                self.cluster.tunnel_closed(tunnel)
            logger.info("tunnel %s closed: %s", tunnel.name, reason)

    def get(self, name: str) -> Tunnel | None:
        return self.tunnels.get(name)

    # --- in-flight requests (for a graceful drain) ------------------------------------------
    def request_started(self) -> None:
        self.in_flight += 1
        self._idle_event.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._idle_event.set()

    async def drain(self, timeout: float) -> bool:
        """Stop taking tunnels, wait for in-flight requests; True if all finished in time."""
        self.accepting = False
        for tunnel in self.tunnels.values():
            if tunnel.server is not None:
                tunnel.server.close()
        try:
            async with asyncio.timeout(timeout):
                await self._idle_event.wait()
            return True
        except TimeoutError:
            return False

    # --- counters ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.RELAY_FLUSH_S)
            try:
                await self.flush()
                await self.close_tunnels_of_unusable_tokens()
            except Exception:
                logger.exception("could not flush tunnel counters; will retry")

    async def close_tunnels_of_unusable_tokens(self) -> int:
        """Close live tunnels whose token expired, was revoked or whose user was deactivated
        since registration (revoking through the admin closes them at once; this catches
        expiry and changes made elsewhere). One query per flush, none per request."""
        ids = {t.token_id for t in self.tunnels.values() if t.token_id is not None}
        if not ids:
            return 0
        gone = await database_sync_to_async(store.unusable_tokens)(ids)
        closing = [t for t in self.tunnels.values() if t.token_id in gone]
        for tunnel in closing:
            self.close(tunnel, "token no longer valid")
        return len(closing)

    def _collect(self) -> list[store.SessionUpdate]:
        updates = []
        for tunnel in [*self.tunnels.values(), *self._closed_pending]:
            if tunnel.dirty and tunnel.session_id is not None:
                tunnel.dirty = False
                updates.append(
                    store.SessionUpdate(
                        id=tunnel.session_id,
                        sockets=tunnel.connected_sockets,
                        peak_sockets=tunnel.peak_sockets,
                        requests=tunnel.requests,
                        bytes_in=tunnel.bytes_in,
                        bytes_out=tunnel.bytes_out,
                        last_activity_age_s=time.monotonic() - tunnel.last_activity,
                        closed=tunnel.closed,
                        close_reason=tunnel.close_reason,
                    )
                )
        self._closed_pending.clear()
        return updates

    async def flush(self) -> int:
        closed = list(self._closed_pending)
        updates = self._collect()
        if updates:
            try:
                await database_sync_to_async(store.apply_updates)(updates)
            except BaseException:
                # Nothing was written: keep every change for the next flush, or a closed
                # session would stay live in the database and its name taken for good.
                ids = {u.id for u in updates}
                for tunnel in [*self.tunnels.values(), *closed]:
                    if tunnel.session_id in ids:
                        tunnel.dirty = True
                self._closed_pending[:0] = [t for t in closed if t not in self._closed_pending]
                raise
        return len(updates)

    async def shutdown(self, reason: str = "relay stopped") -> None:
        for tunnel in list(self.tunnels.values()):
            self.close(tunnel, reason)
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush()

    def status(self) -> dict[str, Any]:
        return {
            "tunnels": len(self.tunnels),
            "sockets": sum(t.connected_sockets for t in self.tunnels.values()),
            "in_flight": self.in_flight,
            "tasks": len(asyncio.all_tasks()),  # a leak shows here first
            "uptime_s": round(time.time() - self.started_at, 1),
        }


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
