"""One log line per refused registration (event `registration_refused`), bounded.

A refusal is the client's mistake and anyone can repeat it at will (a wrong token in a loop,
the npm client retrying for ever): Django's own line per 4xx was switched off for that
(tunnels/quiet.py). The operator still needs to see refusals, with why: so each is logged at
INFO with its fields, but at most BURST lines per WINDOW_S in a process; past that they are
counted, and the next line logged says how many were left out.
"""

from __future__ import annotations

import logging
import time

from django.http import HttpRequest

from tunnels.identity import identify

logger = logging.getLogger("tunnels.registration")

# Enough for every refusal a team's clients make in a bad minute, few enough that a loop
# from one address cannot fill the log (about one line a second on average).
BURST = 60
WINDOW_S = 60.0

_window_start = 0.0
_logged = 0
_left_out = 0


def refused(request: HttpRequest, status: int, message: str, reason: str) -> None:
    global _window_start, _logged, _left_out
    now = time.monotonic()
    if now - _window_start >= WINDOW_S:
        _window_start, _logged = now, 0
    if _logged >= BURST:
        _left_out += 1
        return
    _logged += 1
    requester = identify(request)
    name = request.path.strip("/")
    fields = {
        "event": "registration_refused",  # relay/log_events.py names the events
        "status": status,
        "reason": reason or f"http_{status}",
        "client_ip": requester.ip,
        # Before the token is checked its user is not known: "token" says one was given.
        "owner": "anonymous" if requester.credential is None else "token",
        "requested": name or "?new",
        "left_out": _left_out,
    }
    _left_out = 0
    logger.info("registration refused (%d) for %s: %s", status, requester.ip, message, extra=fields)
