"""Who holds a name: a takeover (our lt's --takeover) and the client it replaced, the owner
reclaiming its name (here or, scale-out, from another node), and room under an owner's
live-tunnel limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from typing import Protocol

from django.db import IntegrityError

from relay import database, protocol, records
from relay.pool.errors import RegistrationError
from relay.pool.hooks import ClusterHooks
from relay.pool.tunnel import Tunnel
from relay.protocol import RECLAIM_POLL_S, RECLAIM_WAIT_S

logger = logging.getLogger(__name__)


class HoldersHost(Protocol):
    """What the name holders need of their registry."""

    @property
    def tunnels(self) -> dict[str, Tunnel]: ...

    @property
    def cluster(self) -> ClusterHooks | None: ...

    def close(self, tunnel: Tunnel, reason: str) -> None: ...

    def schedule_expiry(self, tunnel: Tunnel) -> None: ...


class NameHolders:
    """Owned by relay.pool.registry.Registry: the clients replaced by a takeover."""

    def __init__(self, host: HoldersHost) -> None:
        self.host = host
        # Clients replaced by a takeover: client id -> (name, new client's address, when).
        self._taken_over: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    def refuse_if_taken_over(self, client_id: str) -> None:
        """A client replaced by a takeover is told so (and our lt stops) instead of taking
        the name back or starting afresh under another one."""
        record = self._taken_over.get(client_id)
        if record is None:
            return
        name, by_ip, when = record
        if time.monotonic() - when > protocol.TAKEN_OVER_TTL_S:
            del self._taken_over[client_id]
            return
        raise RegistrationError(
            409,
            f"The tunnel {name!r} was taken over by another client (lt --takeover, from "
            f"{by_ip}); this client stops instead of taking it back.",
            reason=protocol.REFUSAL_TAKEN_OVER,
        )

    def take_over(self, tunnel: Tunnel, client_ip: str, client_id: str) -> None:
        """Close the name's live client (all its sockets and its pool listener) before the
        new client registers it, and remember the old client to tell it why."""
        self.remember_taken_over(tunnel, client_ip)
        logger.info("tunnel %s taken over from %s by %s", tunnel.name, tunnel.client_ip, client_ip)
        self.host.close(tunnel, f"taken over by a client from {client_ip}")

    def remember_taken_over(self, tunnel: Tunnel, by: str) -> None:
        """Tell the tunnel's client, when it registers again, that it was replaced (bounded
        by TAKEN_OVER_MEMORY; the npm client sends no id and stops on its own)."""
        if not tunnel.client_id:
            return
        self._taken_over[tunnel.client_id] = (tunnel.name, by, time.monotonic())
        self._taken_over.move_to_end(tunnel.client_id)
        while len(self._taken_over) > protocol.TAKEN_OVER_MEMORY:
            self._taken_over.popitem(last=False)

    def release_for_owner(self, owner: str, limit: int, tcp_only: bool = False) -> bool:
        """Make room under the owner's live-tunnel limit (`tcp_only`: its live-TCP-tunnel
        limit): tunnels whose client is gone (in their grace period) do not hold a place;
        the longest gone are released first. False when the owner's connected tunnels alone
        reach the limit."""
        mine = [
            t
            for t in self.host.tunnels.values()
            if t.owner == owner and (t.tcp is not None or not tcp_only)
        ]
        excess = len(mine) - limit + 1
        if excess <= 0:
            return True
        now = time.monotonic()
        gone = [t for t in mine if not t.client_connected(now)]
        if len(gone) < excess:
            return False
        gone.sort(key=lambda t: t.offline_since if t.offline_since is not None else now)
        for tunnel in gone[:excess]:
            self.host.close(tunnel, "released for a newer tunnel of its owner")
        return True

    async def open_session(self, tunnel: Tunnel, max_live: int, takeover: bool = False) -> int:
        """Insert the session row. On a named node, when the name's live row is the same
        owner's on another node, that node is asked to release it and the insert is retried
        for up to RECLAIM_WAIT_S (scale-out); IntegrityError when the name stays taken."""
        open_row = functools.partial(database.call, records.get().open_session)
        row = {
            "subdomain": tunnel.name,
            "client_ip": tunnel.client_ip,
            "port": tunnel.port,
            "max_sockets": tunnel.max_conn_count,
            "owner_id": tunnel.user_id,
            "token_id": tunnel.token_id,
            "max_live": max_live,
            "tcp_port": tunnel.tcp.port if tunnel.tcp is not None else None,
        }
        try:
            return await open_row(**row)
        except IntegrityError:
            if self.host.cluster is None or not await self.host.cluster.release(
                tunnel.name, tunnel.owner, tunnel.client_id, takeover
            ):
                raise
        deadline = time.monotonic() + RECLAIM_WAIT_S  # scale-out
        while True:
            await asyncio.sleep(RECLAIM_POLL_S)
            try:
                return await open_row(**row)
            except IntegrityError:
                if time.monotonic() >= deadline:
                    raise

    def reconnecting_client(self, tunnel: Tunnel, client_id: str) -> bool:
        """Whether `client_id` is the tunnel's own client registering again while still
        connected (our lt reconnecting). An anonymous tunnel on upgraded pool connections
        takes only its pool secret as proof: its client knows it, and a client id is no
        credential."""
        if not client_id or client_id != tunnel.client_id:
            return False
        return tunnel.user_id is not None or tunnel.server is not None

    def move_owner(self, tunnel: Tunnel, owner: str, user_id: int | None) -> None:
        """Its client proved itself with the pool secret from `owner` (a new address): an
        anonymous tunnel belongs to that address from now on (its live count, its
        release_for_owner, its session row's address, which the flusher writes); the old
        address owns it no more. A token holder's owner is its user and stays."""
        if tunnel.user_id is not None or user_id is not None or tunnel.owner == owner:
            return
        logger.info("tunnel %s moved to a new address with its pool secret", tunnel.name)
        tunnel.owner = owner

    def reclaim(self, tunnel: Tunnel, client_ip: str, client_id: str) -> Tunnel:
        """The owner asks again for its name, its client gone or reconnecting: same tunnel,
        same port, fresh sockets."""
        for conn in list(tunnel.connections):
            if not conn.busy:
                conn.abort()
        tunnel.registered_by(client_ip, client_id)
        if not tunnel.connections:
            tunnel.offline_since = time.monotonic()
            self.host.schedule_expiry(tunnel)
        logger.info("tunnel %s reclaimed by its owner from %s", tunnel.name, client_ip)
        return tunnel
