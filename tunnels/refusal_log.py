"""One log line per refused registration (event `registration_refused`), bounded.

A refusal is the client's mistake and anyone can repeat it at will (a wrong token in a loop,
the npm client retrying for ever): Django's own line per 4xx was switched off for that
(tunnels/quiet.py). The operator still needs to see refusals, with why: so each is logged at
INFO with its fields, but in each REFUSAL_LOG_WINDOW_S at most REFUSAL_LINES_PER_ADDRESS
lines per client address and REFUSAL_LINES_PER_WINDOW in the process (relay/protocol.py), so
one looping client cannot hide everyone else's refusals; past either they are counted, and
the next line logged says how many were left out.
"""

from __future__ import annotations

import logging
import time

from django.http import HttpRequest

from relay.protocol import (
    REFUSAL_LINES_PER_ADDRESS,
    REFUSAL_LINES_PER_WINDOW,
    REFUSAL_LOG_WINDOW_S,
)
from tunnels.identity import identify

logger = logging.getLogger("tunnels.registration")


class Ration:
    """Which refusals get a line (sans-IO: `admit` is told the time)."""

    def __init__(
        self,
        per_address: int = REFUSAL_LINES_PER_ADDRESS,
        per_window: int = REFUSAL_LINES_PER_WINDOW,
        window_s: float = REFUSAL_LOG_WINDOW_S,
    ) -> None:
        self.per_address, self.per_window, self.window_s = per_address, per_window, window_s
        self.window_start = float("-inf")
        self.logged = 0
        # Lines per address in this window: only addresses that got one are kept, so at most
        # per_window of them; cleared with the window.
        self.by_address: dict[str, int] = {}
        self.left_out = 0

    def admit(self, address: str, now: float) -> int | None:
        """None: leave this refusal out (it is counted). Else log it, saying how many were
        left out since the last line logged."""
        if now - self.window_start >= self.window_s:
            self.window_start, self.logged = now, 0
            self.by_address.clear()
        lines = self.by_address.get(address, 0)
        if self.logged >= self.per_window or lines >= self.per_address:
            self.left_out += 1
            return None
        self.by_address[address] = lines + 1
        self.logged += 1
        left_out, self.left_out = self.left_out, 0
        return left_out


_ration = Ration()


def refused(request: HttpRequest, status: int, message: str, reason: str) -> None:
    requester = identify(request)
    left_out = _ration.admit(requester.ip, time.monotonic())
    if left_out is None:
        return
    name = request.path.strip("/")
    fields = {
        "event": "registration_refused",  # relay/log_events.py names the events
        "status": status,
        "reason": reason or f"http_{status}",
        "client_ip": requester.ip,
        # Before the token is checked its user is not known: "token" says one was given.
        "owner": "anonymous" if requester.credential is None else "token",
        "requested": name or "?new",
        "left_out": left_out,
    }
    logger.info("registration refused (%d) for %s: %s", status, requester.ip, message, extra=fields)
