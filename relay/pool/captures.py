"""The request inspector's memory: each tunnel's last exchanges, for its owner.

SEAM STUB (issue 14): the shapes are final, the bodies are not. relay.protocol documents the
JSON (INSPECT_PATH) and the limits (RELAY_INSPECT_*); relay/proxy/replay.py sends a capture
again (installed as `registry.replayer` by relay/asgi.py, since the pool layer may not import
the proxies).
"""

from __future__ import annotations

from typing import Any, Protocol


class Tunnel(Protocol):
    """What the inspector needs of relay.pool.tunnel.Tunnel (which imports this module)."""

    name: str
    captures: TunnelCaptures | None


class ReplayError(Exception):
    """Why a replay cannot be done, with the HTTP status the site answers (404: no such
    tunnel or capture; 400: bad edits; 502/504: the tunnel failed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TunnelCaptures:
    """One tunnel's kept exchanges (bounded by RELAY_INSPECT_REQUESTS)."""


def enable(tunnel: Tunnel, on: bool) -> None:
    """Start (or keep) keeping `tunnel`'s exchanges when `on`; stop and forget them when not."""


def summaries(tunnel: Tunnel | None, after: int = 0) -> list[dict[str, Any]] | None:
    return None


def detail(tunnel: Tunnel | None, capture_id: int) -> dict[str, Any] | None:
    return None


async def replay(tunnel: Tunnel | None, capture_id: int, edits: dict[str, Any]) -> dict[str, Any]:
    raise ReplayError(404, "There is no such request to replay.")
