"""Which event loop `lt` runs on: uvloop when it is importable (a pinned dependency of the
client; its loop and transports cost the client less CPU per request), else asyncio's own.
`LT_UVLOOP=false` (or `0`, `no`, `off`) keeps asyncio's loop and does not import uvloop at
all: the way around a uvloop bug on some platform, and how its cost is compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

UVLOOP_ENV = "LT_UVLOOP"
_OFF = frozenset({"0", "false", "no", "off"})

T = TypeVar("T")


def loop_factory(environ: Mapping[str, str]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's (LT_UVLOOP off, or uvloop missing)."""
    if environ.get(UVLOOP_ENV, "").strip().lower() in _OFF:
        return None
    try:
        import uvloop
    except ImportError:  # a platform without a uvloop wheel (Windows): asyncio's loop
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], environ: Mapping[str, str]) -> T:
    """asyncio.run(main) on the loop `environ` chooses."""
    with asyncio.Runner(loop_factory=loop_factory(environ)) as runner:
        return runner.run(main)
