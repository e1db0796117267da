"""The registry's counters on their way to the database, in batches (never per request).

Every RELAY_FLUSH_S the registry's Flusher writes what changed of each tunnel's counters and the
tunnels closed since (one transaction), closes tunnels whose token can no longer be used,
and deletes closed session rows past their retention. All of it through relay.records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from relay import database, records
from relay.pool.tunnel import Tunnel
from relay.protocol import PRUNE_BATCH, PRUNE_EVERY_S
from relay.records import SessionUpdate
from relay.tasks import background

logger = logging.getLogger(__name__)


class FlushSettings(Protocol):
    """The settings the flusher reads (at each use: tests change them on the fly)."""

    @property
    def RELAY_FLUSH_S(self) -> float: ...

    @property
    def RELAY_SESSION_RETENTION_DAYS(self) -> int: ...


class FlushHost(Protocol):
    """What the flusher needs of its registry: the live tunnels, and closing one."""

    @property
    def tunnels(self) -> dict[str, Tunnel]: ...

    def close(self, tunnel: Tunnel, reason: str) -> None: ...


class Flusher:
    """Owned by relay.pool.registry.Registry: the tunnels closed since the last flush, the
    flush task, and when pruning is next due."""

    def __init__(self, host: FlushHost, settings: FlushSettings) -> None:
        self.host = host
        self.settings = settings
        # Closed since the last flush: their last counters and close are still to be written.
        self.pending: list[Tunnel] = []
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0  # monotonic time of the next pruning of closed sessions

    def start(self) -> None:
        if self._task is None:
            self._task = background(self._flush_forever())

    async def stop(self) -> None:
        """Stop the periodic flush and write what is left (the registry's shutdown)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.RELAY_FLUSH_S)
            try:
                await self.flush()
                await self.close_tunnels_of_unusable_tokens()
                await self.prune_sessions()
            except Exception:
                logger.exception("could not flush tunnel counters; will retry")

    async def prune_sessions(self, now: float | None = None) -> int:
        """Delete one batch of closed session rows past their retention (item 23); again at
        the next flush while batches come back full, else after PRUNE_EVERY_S."""
        now = time.monotonic() if now is None else now
        if now < self._next_prune:
            return 0
        deleted = await database.call(
            records.get().prune_closed_sessions,
            self.settings.RELAY_SESSION_RETENTION_DAYS,
            PRUNE_BATCH,
        )
        if deleted < PRUNE_BATCH:
            self._next_prune = now + PRUNE_EVERY_S
        if deleted:
            logger.info("deleted %d closed session rows past their retention", deleted)
        return deleted

    async def close_tunnels_of_unusable_tokens(self) -> int:
        """Close live tunnels whose token expired, was revoked or whose user was deactivated
        since registration (revoking through the admin closes them at once; this catches
        expiry and changes made elsewhere). One query per flush, none per request."""
        ids = {t.token_id for t in self.host.tunnels.values() if t.token_id is not None}
        if not ids:
            return 0
        gone = await database.call(records.get().unusable_tokens, ids)
        closing = [t for t in self.host.tunnels.values() if t.token_id in gone]
        for tunnel in closing:
            self.host.close(tunnel, "token no longer valid")
        return len(closing)

    def _collect(self) -> list[SessionUpdate]:
        updates = []
        for tunnel in [*self.host.tunnels.values(), *self.pending]:
            if tunnel.dirty and tunnel.session_id is not None:
                tunnel.dirty = False
                updates.append(
                    SessionUpdate(
                        id=tunnel.session_id,
                        sockets=tunnel.connected_sockets,
                        peak_sockets=tunnel.peak_sockets,
                        requests=tunnel.requests,
                        bytes_in=tunnel.bytes_in,
                        bytes_out=tunnel.bytes_out,
                        last_activity_age_s=time.monotonic() - tunnel.last_activity,
                        closed=tunnel.closed,
                        close_reason=tunnel.close_reason,
                        client_ip=tunnel.client_ip,
                    )
                )
        self.pending.clear()
        return updates

    async def flush(self) -> int:
        closed = list(self.pending)
        updates = self._collect()
        if updates:
            try:
                await database.call(records.get().apply_updates, updates)
            except BaseException:
                # Nothing was written: keep every change for the next flush, or a closed
                # session would stay live in the database and its name taken for good.
                ids = {u.id for u in updates}
                for tunnel in [*self.host.tunnels.values(), *closed]:
                    if tunnel.session_id in ids:
                        tunnel.dirty = True
                self.pending[:0] = [t for t in closed if t not in self.pending]
                raise
        return len(updates)
