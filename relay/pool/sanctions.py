"""What an operator's Disconnect and Suspend leave behind in a relay's memory (the registry's
`sanctions`): the cool-downs after a Disconnect and the suspended names.

A Disconnect (relay/cluster/control.py, `cooldown_s` in the close message) keeps the closed
tunnel's name, and its owner's registrations of any name, refused for a while: without it the
npm client re-registers at once and our lt after its backoff, so a Disconnect lasted a
second. A suspension is kept here by name only, for visitors (the suspension page) and for a
refusal before any database work; the database's Suspension rows decide registrations of
suspended tokens and users (tunnels/auth.py), so they hold across restarts and nodes.

Every check is a dict lookup; the cool-downs expire and are bounded by
protocol.COOLDOWNS_REMEMBERED, the names by protocol.SUSPENDED_NAMES_REMEMBERED.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

from relay import protocol
from relay.pool.errors import RegistrationError


def disconnected_message(name: str, wait_s: int) -> str:
    return (
        f"The tunnel {name} was disconnected by the relay's operator; it can be registered "
        f"again in {wait_s} s."
    )


def suspended_message(name: str, reason: str) -> str:
    return f"The tunnel name {name} is suspended by the relay's operator: {reason}"


def visitor_message(reason: str) -> str:
    """What a visitor of a suspended name reads (escaped by relay/errors.py)."""
    return f"This tunnel has been suspended by the relay's operator: {reason}"


class Sanctions:
    """Cool-downs (a name or an owner key -> when it ends, and the name disconnected) and
    suspended names (name -> the operator's reason)."""

    __slots__ = ("cooling", "suspended")

    def __init__(self) -> None:
        # Keys are names, or owner keys ("user:<id>", "ip:<addr>"; names never contain ":").
        # Insertion order is end order while the duration stays the same (one setting), so
        # the expiry sweep stops at the first entry that has not ended; past the bound the
        # oldest entry goes.
        self.cooling: dict[str, tuple[float, str]] = {}
        self.suspended: dict[str, str] = {}

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
    def suspend(self, names: Iterable[str], reason: str) -> None:
        for name in names:
            if name in self.suspended or len(self.suspended) < protocol.SUSPENDED_NAMES_REMEMBERED:
                self.suspended[name] = reason

    def lift(self, names: Iterable[str]) -> None:
        for name in names:
            self.suspended.pop(name, None)

    def replace(self, suspended: Mapping[str, str]) -> None:
        """The suspended names as the database has them (at start)."""
        self.suspended = {}
        for name, reason in suspended.items():
            self.suspend((name,), reason)

    def suspension(self, name: str) -> str | None:
        """The reason `name` is suspended, or None."""
        return self.suspended.get(name)

    # --- registrations ------------------------------------------------------------------------
    def holds(self, name: str, now: float | None = None) -> bool:
        """Whether a random name must not be handed out."""
        now = time.monotonic() if now is None else now
        return name in self.suspended or self._cooling(name, now) is not None

    def refusal(
        self, name: str | None, owner: str, now: float | None = None
    ) -> RegistrationError | None:
        """Why registering `name` (None: a random one) by `owner` ("" when not known yet) is
        refused now, or None."""
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
                return RegistrationError(
                    403,
                    disconnected_message(disconnected, wait_s),
                    reason=protocol.REFUSAL_DISCONNECTED,
                    retry_after=wait_s,
                )
        return None
