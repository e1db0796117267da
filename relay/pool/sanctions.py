"""What an operator's Disconnect and Suspend leave behind in a relay's memory (the registry's
`sanctions`): the cool-downs after a Disconnect and the suspended names, tokens and users.

A Disconnect (relay/cluster/control.py, `cooldown_s` in the close message) keeps the closed
tunnel's name refused to anyone for a while, and its owner from registering a new tunnel
(not from reclaiming one of its own that still lives: the registry asks `owner_refusal` only
for a new tunnel): without it the npm client re-registers at once and our lt after its
backoff, so a Disconnect lasted a second. An anonymous owner is an address, so everyone
behind the same NAT (or IPv6 /64) waits out the owner's cool-down too (docs/admin.md).

A suspension is kept here by name (visitors see the suspension page; a refusal before any
database work) and by token id and user id: the database's Suspension rows refuse those
registrations (tunnels/auth.py) across restarts and nodes, and the registry checks the ids
again here, so a suspension arriving after that database check still stops the tunnel.

Every check is a dict lookup; the cool-downs expire and are bounded by
protocol.COOLDOWNS_REMEMBERED, the names, tokens and users (each) by
protocol.SUSPENDED_NAMES_REMEMBERED.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from relay import protocol
from relay.pool.errors import RegistrationError


def disconnected_message(name: str, wait_s: int) -> str:
    """Read alone (the npm client prints it) and after our lt's "lt: disconnected by the
    operator: ", so it names the tunnel and when it comes back, and says who once."""
    return f"{name} was closed by the relay's operator; it can be registered again in {wait_s} s."


def owner_cooling_message(name: str, asked: str | None, wait_s: int) -> str:
    """The same, to the owner of a disconnected tunnel registering another one (`asked`; None:
    a random name): it says why this name is refused though the operator closed another."""
    which = f"{asked} cannot" if asked else "No new tunnel can"
    return (
        f"{which} be registered for another {wait_s} s: the relay's operator closed your "
        f"tunnel {name}, and your new tunnels wait as long."
    )


def suspended_message(name: str, reason: str) -> str:
    return f"The tunnel name {name} is suspended by the relay's operator: {reason}"


def suspended_id_message(what: str, reason: str) -> str:
    """`what`: "That API token" or "Your account" (as tunnels/auth.py says it)."""
    return f"{what} is suspended by the relay's operator: {reason}"


def _ids(values: Iterable[object]) -> list[int]:
    """The ids of a message's list; anything else in it (bools too) is no id."""
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _hold(held: dict[Any, str], key: object, reason: str) -> None:
    if key in held or len(held) < protocol.SUSPENDED_NAMES_REMEMBERED:
        held[key] = reason


def visitor_message(reason: str) -> str:
    """What a visitor of a suspended name reads (escaped by relay/errors.py)."""
    return f"This tunnel has been suspended by the relay's operator: {reason}"


class Sanctions:
    """Cool-downs (a name or an owner key -> when it ends, and the name disconnected) and
    suspended names, token ids and user ids (-> the operator's reason)."""

    __slots__ = ("cooling", "suspended", "tokens", "users")

    def __init__(self) -> None:
        # Keys are names, or owner keys ("user:<id>", "ip:<addr>"; names never contain ":").
        # Insertion order is end order while the duration stays the same (one setting), so
        # the expiry sweep stops at the first entry that has not ended; past the bound the
        # oldest entry goes.
        self.cooling: dict[str, tuple[float, str]] = {}
        self.suspended: dict[str, str] = {}
        self.tokens: dict[int, str] = {}
        self.users: dict[int, str] = {}

    # --- Disconnect ---------------------------------------------------------------------------
    def cool_down(self, name: str, owner: str, seconds: float, now: float | None = None) -> None:
        """Refuse `name` to anyone, and any name to `owner` ("" for none), for `seconds`."""
        if seconds <= 0:
            return
        now = time.monotonic() if now is None else now
        self._expire(now)
        until = now + seconds
        for key in (name, owner):
            if key:
                self.cooling.pop(key, None)  # re-inserted last: the order stays end order
                self.cooling[key] = (until, name)
        while len(self.cooling) > protocol.COOLDOWNS_REMEMBERED:
            del self.cooling[next(iter(self.cooling))]

    def _expire(self, now: float) -> None:
        while self.cooling:
            key = next(iter(self.cooling))
            if self.cooling[key][0] > now:
                return
            del self.cooling[key]

    def _cooling(self, key: str, now: float) -> tuple[int, str] | None:
        entry = self.cooling.get(key)
        if entry is None:
            return None
        until, name = entry
        if until <= now:
            del self.cooling[key]
            return None
        # Whole seconds, rounded up, less the timers' slack: no 61 s for a 60 s cool-down.
        return max(1, math.ceil(until - now - protocol.TIMER_SLACK_S)), name

    # --- Suspend ------------------------------------------------------------------------------
    def suspend(
        self,
        names: Iterable[str],
        reason: str,
        token_ids: Iterable[object] = (),
        user_ids: Iterable[object] = (),
    ) -> None:
        for name in names:
            _hold(self.suspended, name, reason)
        for token_id in _ids(token_ids):
            _hold(self.tokens, token_id, reason)
        for user_id in _ids(user_ids):
            _hold(self.users, user_id, reason)

    def lift(
        self,
        names: Iterable[str],
        token_ids: Iterable[object] = (),
        user_ids: Iterable[object] = (),
    ) -> None:
        for name in names:
            self.suspended.pop(name, None)
        for token_id in _ids(token_ids):
            self.tokens.pop(token_id, None)
        for user_id in _ids(user_ids):
            self.users.pop(user_id, None)

    def replace(
        self,
        suspended: Mapping[str, str],
        tokens: Mapping[int, str] | None = None,
        users: Mapping[int, str] | None = None,
    ) -> None:
        """The suspended names, tokens and users as the database has them (at start)."""
        self.suspended, self.tokens, self.users = {}, {}, {}
        for name, reason in suspended.items():
            self.suspend((name,), reason)
        for token_id, reason in (tokens or {}).items():
            self.suspend((), reason, token_ids=(token_id,))
        for user_id, reason in (users or {}).items():
            self.suspend((), reason, user_ids=(user_id,))

    def suspension(self, name: str) -> str | None:
        """The reason `name` is suspended, or None."""
        return self.suspended.get(name)

    # --- registrations ------------------------------------------------------------------------
    def holds(self, name: str, now: float | None = None) -> bool:
        """Whether a random name must not be handed out."""
        now = time.monotonic() if now is None else now
        return name in self.suspended or self._cooling(name, now) is not None

    def refusal(
        self,
        name: str | None,
        owner: str,
        now: float | None = None,
        *,
        user_id: int | None = None,
        token_id: int | None = None,
    ) -> RegistrationError | None:
        """Why registering `name` (None: a random one) by `owner` ("" when not known yet, or
        not to be checked), with this user and token, is refused now, or None."""
        for an_id, held, what in (
            (token_id, self.tokens, "That API token"),
            (user_id, self.users, "Your account"),
        ):
            reason = held.get(an_id) if an_id is not None else None
            if reason is not None:
                return RegistrationError(
                    protocol.SUSPENDED_STATUS,
                    suspended_id_message(what, reason),
                    reason=protocol.REFUSAL_SUSPENDED,
                )
        if name is not None:
            reason = self.suspended.get(name)
            if reason is not None:
                return RegistrationError(
                    protocol.SUSPENDED_STATUS,
                    suspended_message(name, reason),
                    reason=protocol.REFUSAL_SUSPENDED,
                )
        now = time.monotonic() if now is None else now
        for key in (name, owner):
            if not key:
                continue
            cooling = self._cooling(key, now)
            if cooling is not None:
                wait_s, disconnected = cooling
                message = (
                    disconnected_message(disconnected, wait_s)
                    if key == name or disconnected == name
                    else owner_cooling_message(disconnected, name, wait_s)
                )
                return RegistrationError(
                    403,
                    message,
                    reason=protocol.REFUSAL_DISCONNECTED,
                    retry_after=wait_s,
                )
        return None
