"""A team-only tunnel's checks that need the database (relay/proxy/gate.py asks them): is a
visitor's Bearer token an allowed user's (`Records.team_member`), and is a team pass's holder
still on the owner's team (`Records.team_user`: leaving the group, deactivation or suspension
ends a pass within TEAM_ANSWER_TTL_S, not at its expiry)?

Never a query per request:
- answers are cached per key (a token's digest and the owner, or the holder and the owner)
  for TEAM_ANSWER_TTL_S, yes and no in separate tables, each dropping its oldest first, so
  wrong answers cannot push out right ones;
- requests that need the same answer share one lookup (a page's fifty assets: one query);
- lookups that found no one are counted per visitor address key: past
  TEAM_MISSES_PER_ADDRESS in TEAM_MISS_WINDOW_S, that address's unknown keys get a 429
  without a query (a script sending random `lt_` tokens);
- at most TEAM_LOOKUPS_IN_FLIGHT lookups run at once relay-wide (they share the database
  threads, relay/database.py, with registrations and flushes): past that, a 503 with
  Retry-After, never an unbounded queue.

While a pass holder's answer is being asked again (its cached one expired), the request waits
for it, at most TEAM_LOOKUP_WAIT_S; a stale answer does not stand in. Why: the re-check is
what ends a removed teammate's access, and letting the old yes stand while the database is
slow or away would stretch that without a bound. A database that does not answer costs a team
visitor a 503 they can retry, never a wrongful yes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from relay import database, records
from relay import visitor_pass as passes
from relay.asgi_types import Scope
from relay.headers import relay_cookie
from relay.protocol import (
    ACCESS_COOKIE,
    TEAM_ANSWER_TTL_S,
    TEAM_ANSWERS_CACHED,
    TEAM_BUSY_RETRY_S,
    TEAM_LOOKUP_WAIT_S,
    TEAM_LOOKUPS_IN_FLIGHT,
    TEAM_MISS_ADDRESSES,
    TEAM_MISS_WINDOW_S,
    TEAM_MISSES_PER_ADDRESS,
)
from relay.stats import STATS

logger = logging.getLogger(__name__)


class Busy(Exception):
    """The answer cannot be had now: the gate answers `status` with Retry-After."""

    def __init__(self, status: int, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class Answers:
    """key -> until: yes answers and no answers in separate tables, oldest first in each."""

    __slots__ = ("_yes", "_no", "limit")

    def __init__(self, limit: int = TEAM_ANSWERS_CACHED) -> None:
        self._yes: dict[bytes, float] = {}
        self._no: dict[bytes, float] = {}
        self.limit = limit

    def get(self, key: bytes, now: float) -> bool | None:
        for allowed, table in ((True, self._yes), (False, self._no)):
            until = table.get(key)
            if until is not None:
                if until >= now:
                    return allowed
                del table[key]
        return None

    def put(self, key: bytes, allowed: bool, now: float) -> None:
        table, other = (self._yes, self._no) if allowed else (self._no, self._yes)
        other.pop(key, None)
        table.pop(key, None)  # re-inserted last: the table stays oldest first
        while len(table) >= self.limit:
            del table[next(iter(table))]
        table[key] = now + TEAM_ANSWER_TTL_S

    def sizes(self) -> tuple[int, int]:
        return len(self._yes), len(self._no)


class Misses:
    """Lookups that found no one, per visitor address key, in the current window."""

    __slots__ = ("_counts", "_window", "limit")

    def __init__(self, limit: int = TEAM_MISSES_PER_ADDRESS) -> None:
        self._counts: dict[str, int] = {}
        self._window = 0.0
        self.limit = limit

    def _roll(self, now: float) -> None:
        if now - self._window >= TEAM_MISS_WINDOW_S:
            self._counts.clear()
            self._window = now

    def over(self, address: str, now: float) -> bool:
        self._roll(now)
        return self._counts.get(address, 0) >= self.limit

    def note(self, address: str, now: float) -> None:
        self._roll(now)
        count = self._counts.pop(address, 0) + 1
        while len(self._counts) >= TEAM_MISS_ADDRESSES:
            del self._counts[next(iter(self._counts))]
        self._counts[address] = count


class _Failed(Exception):
    """The lookup raised (the database is away); nothing is cached."""


class Lookups:
    """The caches, the per-address misses and the lookups in flight (one set per process)."""

    __slots__ = ("answers", "misses", "_pending", "limit")

    def __init__(self, limit: int = TEAM_LOOKUPS_IN_FLIGHT) -> None:
        self.answers = Answers()
        self.misses = Misses()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self.limit = limit

    async def ask(self, key: bytes, call: Callable[[], bool], address: str) -> bool:
        """The cached answer for `key`, or `call`'s (run off the loop, shared by everyone
        waiting for `key`); Busy when it cannot be had within the limits."""
        known = self.answers.get(key, time.monotonic())
        if known is not None:
            return known
        pending = self._pending.get(key)
        if pending is None:
            if self.misses.over(address, time.monotonic()):
                raise Busy(
                    429,
                    "Too many wrong or refused credentials from your address; wait a minute.",
                    int(TEAM_MISS_WINDOW_S),
                )
            if len(self._pending) >= self.limit:
                STATS.team_busy += 1
                raise Busy(
                    503,
                    "The relay is checking too many team credentials at once; try again in a "
                    "few seconds.",
                    TEAM_BUSY_RETRY_S,
                )
            pending = asyncio.ensure_future(self._lookup(key, call, address))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._finished(key, done))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), TEAM_LOOKUP_WAIT_S)
        except (TimeoutError, _Failed):
            STATS.team_busy += 1
            raise Busy(
                503,
                "The relay cannot check team membership right now; try again in a few seconds.",
                TEAM_BUSY_RETRY_S,
            ) from None

    async def _lookup(self, key: bytes, call: Callable[[], bool], address: str) -> bool:
        try:
            allowed = bool(await database.call(call))
        except Exception as exc:  # the database is away: cache nothing, log no secret
            logger.debug("could not check a team-only tunnel's visitor: %s", type(exc))
            raise _Failed from None
        now = time.monotonic()
        self.answers.put(key, allowed, now)
        if not allowed:
            self.misses.note(address, now)
        return allowed

    def _finished(self, key: bytes, done: asyncio.Future[bool]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody waited for is not logged as lost

    def in_flight(self) -> int:
        return len(self._pending)


lookups = Lookups()
_BEARER = b"bearer "


def pass_holder(name: str, owner_user_id: int | None, scope: Scope) -> int | None:
    """The user id of a current access cookie's holder for this tunnel and owner."""
    value = relay_cookie(scope, ACCESS_COOKIE)
    if value is None:
        return None
    found = passes.verify(value, passes.ACCESS, name, owner_user_id=owner_user_id)
    if found is None or not passes.signed_out.still_in(found):
        return None
    return found.user_id


def bearer(authorization: list[bytes]) -> bytes | None:
    """The token of the request's one `Authorization: Bearer` header, if that is what it has."""
    if len(authorization) != 1:
        return None
    value = authorization[0]
    if value[: len(_BEARER)].lower() != _BEARER:
        return None
    token = value[len(_BEARER) :].strip()
    return token or None


async def token_allowed(token: bytes, owner_user_id: int | None, address: str) -> bool:
    """Is `token` (a visitor's Bearer token) an API token of a user allowed into
    `owner_user_id`'s team-only tunnels? Cached under a digest, never the token itself."""
    if owner_user_id is None:
        return False
    key = b"t" + hashlib.sha256(token + b"|" + str(owner_user_id).encode()).digest()
    credential = token.decode("latin-1")

    def call() -> bool:
        return records.get().team_member(credential, owner_user_id) is not None

    return await lookups.ask(key, call, address)


async def holder_allowed(user_id: int, owner_user_id: int | None, address: str) -> bool:
    """Is the holder of a team pass still allowed into `owner_user_id`'s tunnels (an
    anonymous tunnel's, 0: staff only, as the bare domain's sign-in decides)?"""
    owner = int(owner_user_id or 0)
    key = b"u" + f"{int(user_id)}|{owner}".encode()

    def call() -> bool:
        return records.get().team_user(user_id, owner)

    return await lookups.ask(key, call, address)
