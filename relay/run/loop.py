"""Which event loop the relay runs on.

Daphne creates its loop when `daphne.server` is first imported, so the choice has to be made
before that import: `runrelay` calls `install()` first. uvloop's transports are small C
objects (an idle pool socket costs far less memory) and its loop is faster; the standard
loop stays available with RELAY_UVLOOP=false.
"""

from __future__ import annotations

import asyncio

from django.conf import settings


def install() -> str:
    """Set the event loop policy for the relay process; returns the loop's name."""
    if settings.RELAY_UVLOOP:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a pinned dependency
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"
