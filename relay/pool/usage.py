"""Account quotas: what each account (a user, or an anonymous address) used, shared by all its
tunnels on this relay and, through a store, by every node and across restarts.

One `Usage` per account (`user:<id>`, or `addr:<address key>` for an anonymous one), referenced
from the Quota of each of its tunnels (relay/pool/quota.py): the byte path adds to it and reads
it with integer operations only. Windows are wall-clock, the UTC minute and the UTC day, so
every node agrees on them. A Usage holds the store's totals (every node, as of the last batch)
and this node's counts since then; a limit is reached when the two together reach it.

The `UsageBook` (one per registry) holds the accounts with a live tunnel here. Every
RELAY_FLUSH_S its task sends each account's counts since the last batch to the store and reads
the totals of all nodes back, in one round trip: Redis when REDIS_URL is set (one MULTI of
HINCRBY and EXPIRE, keys under protocol.USAGE_KEY_PREFIX), else the database through the
records port (relay.records add_usage). Between two batches a node may let through at most
what it admits in one batch past a limit another node reached. A store that fails costs
nothing but freshness: the counts stay in memory for the next batch, one WARNING per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis

from relay import database, records
from relay.protocol import (
    DAY_S,
    MINUTE_S,
    PRUNE_EVERY_S,
    USAGE_EXPIRY_SLACK_S,
    USAGE_KEPT_DAYS,
    USAGE_KEY_PREFIX,
    USAGE_STORE_TIMEOUT_S,
)
from relay.records import UsageDelta
from relay.tasks import background

logger = logging.getLogger(__name__)

MINUTE, DAY = "minute", "day"
Totals = dict[tuple[str, str, int], tuple[int, int]]  # (owner, window, start) -> (requests, bytes)


def minute_of(wall: float) -> int:
    """The first second (Unix time) of the UTC minute holding `wall`."""
    return int(wall // MINUTE_S) * int(MINUTE_S)


def day_of(wall: float) -> int:
    """The first second (Unix time) of the UTC day holding `wall`."""
    return int(wall // DAY_S) * int(DAY_S)


def account_of(owner: str) -> str:
    """The account a tunnel's owner key counts under: `user:<id>` as is, an anonymous
    `ip:<address key>` (tunnels/auth.py) as `addr:<address key>`."""
    anonymous = "ip:"
    return "addr:" + owner.removeprefix(anonymous) if owner.startswith(anonymous) else owner


class Usage:
    """One account's use on this node: the store's totals as of the last batch (`stored_*`)
    and what this node counted since (`local_*`), in the current minute and day."""

    __slots__ = (
        "owner",
        "minute",
        "day",
        "stored_minute_requests",
        "stored_day_requests",
        "stored_day_bytes",
        "local_minute_requests",
        "local_day_requests",
        "local_day_bytes",
    )

    def __init__(self, owner: str, wall: float, minute_requests: int = 0, day_bytes: int = 0):
        self.owner = owner
        self.minute = minute_of(wall)
        self.day = day_of(wall)
        self.stored_minute_requests = minute_requests
        self.stored_day_requests = 0
        self.stored_day_bytes = day_bytes
        self.local_minute_requests = 0
        self.local_day_requests = 0
        self.local_day_bytes = 0

    def roll(self, wall: float) -> None:
        """Move to the minute and day holding `wall` (counts of a window gone are dropped: a
        past minute limits nothing, and a day's last batch is at most RELAY_FLUSH_S)."""
        if wall - self.minute >= MINUTE_S or wall < self.minute:
            self.minute = minute_of(wall)
            self.stored_minute_requests = self.local_minute_requests = 0
        if wall - self.day >= DAY_S or wall < self.day:
            self.day = day_of(wall)
            self.stored_day_requests = self.local_day_requests = 0
            self.stored_day_bytes = self.local_day_bytes = 0

    def minute_requests(self, wall: float) -> int:
        self.roll(wall)
        return self.stored_minute_requests + self.local_minute_requests

    def day_bytes(self, wall: float) -> int:
        self.roll(wall)
        return self.stored_day_bytes + self.local_day_bytes

    def day_requests(self, wall: float) -> int:
        self.roll(wall)
        return self.stored_day_requests + self.local_day_requests

    def count_request(self) -> None:
        """One request admitted (call minute_requests first, which moves the windows on)."""
        self.local_minute_requests += 1
        self.local_day_requests += 1

    def add_bytes(self, size: int) -> None:
        self.local_day_bytes += size

    @property
    def unsent(self) -> bool:
        return bool(self.local_minute_requests or self.local_day_requests or self.local_day_bytes)

    def take(self) -> list[UsageDelta]:
        """This node's counts since the last batch, for the store (zero deltas too: the batch
        reads every account's totals back); the local counts start again from zero."""
        deltas = [
            UsageDelta(self.owner, MINUTE, self.minute, self.local_minute_requests, 0),
            UsageDelta(self.owner, DAY, self.day, self.local_day_requests, self.local_day_bytes),
        ]
        self.stored_minute_requests += self.local_minute_requests
        self.stored_day_requests += self.local_day_requests
        self.stored_day_bytes += self.local_day_bytes
        self.local_minute_requests = self.local_day_requests = self.local_day_bytes = 0
        return deltas

    def give_back(self, deltas: list[UsageDelta]) -> None:
        """The store did not take `deltas` (taken by `take`): count them here again."""
        for delta in deltas:
            if delta.window == MINUTE and delta.start == self.minute:
                self.stored_minute_requests -= delta.requests
                self.local_minute_requests += delta.requests
            elif delta.window == DAY and delta.start == self.day:
                self.stored_day_requests -= delta.requests
                self.stored_day_bytes -= delta.bytes
                self.local_day_requests += delta.requests
                self.local_day_bytes += delta.bytes

    def absorb(self, totals: Totals) -> None:
        """The store's totals after a batch (every node): they replace what was stored; what
        this node counted since the batch left stays on top."""
        minute = totals.get((self.owner, MINUTE, self.minute))
        if minute is not None:
            self.stored_minute_requests = minute[0]
        day = totals.get((self.owner, DAY, self.day))
        if day is not None:
            self.stored_day_requests, self.stored_day_bytes = day


class UsageStore(Protocol):
    async def add(self, deltas: list[UsageDelta]) -> Totals: ...

    async def read(self, owner: str, minute: int, day: int) -> tuple[int, int, int]:
        """(requests this minute, requests today, bytes today), all nodes."""
        ...

    async def prune(self, before: int) -> None: ...


class RedisStore:
    """Counters in Redis: a hash per account and window (fields `r` requests, `b` bytes),
    expiring a little after the window ends."""

    def __init__(self, url: str) -> None:
        self.client: Any = aioredis.from_url(
            url,
            socket_timeout=USAGE_STORE_TIMEOUT_S,
            socket_connect_timeout=USAGE_STORE_TIMEOUT_S,
        )

    @staticmethod
    def key(owner: str, window: str, start: int) -> str:
        return f"{USAGE_KEY_PREFIX}{owner}:{window}:{start}"

    async def add(self, deltas: list[UsageDelta]) -> Totals:
        pipe = self.client.pipeline(transaction=True)
        for delta in deltas:
            key = self.key(delta.owner, delta.window, delta.start)
            length = int(MINUTE_S if delta.window == MINUTE else DAY_S)
            pipe.hincrby(key, "r", delta.requests)
            pipe.hincrby(key, "b", delta.bytes)
            pipe.expireat(key, delta.start + length + USAGE_EXPIRY_SLACK_S)
        answers = iter(await pipe.execute())
        totals: Totals = {}
        for delta in deltas:  # each: HINCRBY r, HINCRBY b, EXPIREAT
            requests, size, _ = next(answers), next(answers), next(answers)
            totals[(delta.owner, delta.window, delta.start)] = (int(requests), int(size))
        return totals

    async def read(self, owner: str, minute: int, day: int) -> tuple[int, int, int]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.key(owner, MINUTE, minute), "r")
        pipe.hmget(self.key(owner, DAY, day), ["r", "b"])
        in_minute, (in_day, size) = await pipe.execute()
        return int(in_minute or 0), int(in_day or 0), int(size or 0)

    async def prune(self, before: int) -> None:
        """Nothing to do: every key expires."""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


class RecordsStore:
    """Counters in the database (tunnels.models.UsageWindow) through the records port, off
    the event loop."""

    async def add(self, deltas: list[UsageDelta]) -> Totals:
        return await database.call(records.get().add_usage, deltas)

    async def read(self, owner: str, minute: int, day: int) -> tuple[int, int, int]:
        requests, size = await database.call(records.get().usage_of, owner, minute, day)
        return requests, 0, size

    async def prune(self, before: int) -> None:
        await database.call(records.get().prune_usage, before)

    async def close(self) -> None:
        """Nothing held."""


class UsageSettings(Protocol):
    @property
    def RELAY_FLUSH_S(self) -> float: ...

    @property
    def REDIS_URL(self) -> str: ...


class UsageBook:
    """The accounts with tunnels on this relay, their Usage, and the batches to the store."""

    def __init__(self, settings: UsageSettings, live: Callable[[], set[str]] | None = None) -> None:
        self.settings = settings
        self.live = live  # the accounts with a live tunnel here (the registry's)
        self.owners: dict[str, Usage] = {}
        self.store: RedisStore | RecordsStore | None = None
        self.failing = False  # the last batch failed: warned once, quiet until it works again
        self._task: asyncio.Task[None] | None = None
        self._batch: asyncio.Future[bool] | None = None  # the batch in flight, if any
        self._next_prune = 0.0

    def _store(self) -> RedisStore | RecordsStore:
        if self.store is None:
            url = self.settings.REDIS_URL
            self.store = RedisStore(url) if url else RecordsStore()
        return self.store

    async def attach(self, owner: str) -> Usage:
        """The account's Usage, read from the store when its first tunnel here registers (one
        call, with a deadline), so a restarted relay and a new node keep counting."""
        usage = self.owners.get(owner)
        if usage is not None:
            return usage
        wall = time.time()
        minute, day = minute_of(wall), day_of(wall)
        known = (0, 0, 0)
        try:
            async with asyncio.timeout(USAGE_STORE_TIMEOUT_S):
                known = await self._store().read(owner, minute, day)
        except Exception as exc:
            self._warn(exc)
        usage = self.owners.get(owner)  # another registration of it may have finished first
        if usage is None:
            usage = Usage(owner, wall, known[0], known[2])
            usage.stored_day_requests = known[1]
            self.owners[owner] = usage
        self.start()
        return usage

    def start(self) -> None:
        if self._task is None:
            self._task = background(self._forever())

    async def stop(self) -> None:
        """Stop the batches and send what is left (the relay's shutdown). A batch in flight
        is not cancelled but waited for (it has its deadline, USAGE_STORE_TIMEOUT_S): cut off
        after its counts were taken, they would be neither stored nor given back."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._batch is not None:
            with contextlib.suppress(Exception):
                await self._batch  # (the loop above only stopped waiting for it)
        if self.owners:
            await self.flush()
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.RELAY_FLUSH_S)
            batch = asyncio.ensure_future(
                self.flush(self.live() if self.live is not None else None)
            )
            self._batch = batch
            try:
                await asyncio.shield(batch)  # stop() cancels this loop, never a batch midway
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not the store (flush keeps those): the next batch tries
                logger.exception("account usage batch failed; will retry")
            finally:
                if batch.done():
                    self._batch = None

    async def flush(self, live: set[str] | None = None) -> bool:
        """One batch: every account's counts to the store, every total back. False when the
        store failed (the counts are kept for the next batch). Accounts with nothing unsent
        and no live tunnel (`live`, from the registry) are forgotten after it."""
        wall = time.time()
        taken: list[tuple[Usage, list[UsageDelta]]] = []
        for usage in self.owners.values():
            usage.roll(wall)
            taken.append((usage, usage.take()))
        if not taken:
            return True
        try:
            async with asyncio.timeout(USAGE_STORE_TIMEOUT_S):
                totals = await self._store().add([d for _, deltas in taken for d in deltas])
        except Exception as exc:
            for usage, deltas in taken:
                usage.give_back(deltas)
            self._warn(exc)
            return False
        if self.failing:
            logger.warning("account usage store is back: counts are shared again")
            self.failing = False
        for usage, _ in taken:
            usage.absorb(totals)
        if live is not None:
            for owner in [o for o, u in self.owners.items() if o not in live and not u.unsent]:
                del self.owners[owner]
        await self._prune(wall)
        return True

    async def _prune(self, wall: float) -> None:
        if wall < self._next_prune:
            return
        self._next_prune = wall + PRUNE_EVERY_S  # only today's window is ever read
        try:
            await self._store().prune(day_of(wall) - USAGE_KEPT_DAYS * int(DAY_S))
        except Exception as exc:
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            logger.warning(
                "account usage store unavailable (%s): counting in memory until it answers",
                type(exc).__name__,
            )
