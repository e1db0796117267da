"""The request inspector's page on the account pages (`/account/tunnels/<name>/`).

Who may open it: the tunnel's owner, and staff when RELAY_INSPECT_STAFF is on. Anyone else
gets the same 404 page as a tunnel that is not live, so the page says nothing of other users'
tunnels. The page is a shell: tunnels/static/tunnels/inspector.js reads the captures and
replays them through the tunnel API (tunnels/inspect_api.py, relay.protocol.INSPECT_PATH),
which on a cluster any node forwards to the owner node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from relay import face, protocol
from tunnels import addresses
from tunnels.models import TunnelSession
from tunnels.plans import limits_for

TEMPLATE = "tunnels/account/tunnel.html"
POLL_MS = 1000  # the list's poll while the tab is visible (inspector.js backs off on errors)
POLL_DEADLINE_MS = 5000  # one poll's deadline; past it, that poll counts as an error
# A replay's deadline in the page beyond the relay's own (a socket wait, then the response
# timeout): the relay answers first, with what went wrong, rather than the page giving up.
REPLAY_MARGIN_S = 10


def replay_deadline_ms() -> int:
    seconds = settings.RELAY_SOCKET_WAIT_S + settings.RELAY_RESPONSE_TIMEOUT_S + REPLAY_MARGIN_S
    return round(seconds * 1000)


@dataclass(frozen=True)
class Live:
    """What the page needs of a live tunnel: its owner and whether its plan keeps captures."""

    owner_id: int | None
    inspect: bool
    tcp_port: int = 0  # a TCP tunnel (`lt tcp`): no HTTP requests, nothing to inspect


def _live_row(name: str) -> Live | None:
    """The live session row of `name` (scale-out: any node's; the API call is forwarded)."""
    row = (
        TunnelSession.objects.filter(subdomain=name, is_live=True)
        .values("owner_id", "token_id", "tcp_port")
        .first()
    )
    if row is None:
        return None
    return Live(
        owner_id=row["owner_id"],
        inspect=limits_for(row["owner_id"], row["token_id"]).inspect,
        tcp_port=row["tcp_port"] or 0,
    )


async def live_tunnel(name: str) -> Live | None:
    """The tunnel `name` if it is live. On a single relay the registry decides, read on this
    event loop: the relay decided at registration whether to keep captures, so `captures` being
    None (plan off then, or an anonymous tunnel) is what "off" means, whatever the plan says
    now. On a cluster node, a tunnel this node does not hold: the database's live row and
    the plan (the owner node answers the forwarded API call with 409 when it keeps nothing)."""
    status = face.tunnel_status(name)
    if status is not None:
        return Live(
            owner_id=status.user_id, inspect=face.inspecting(name), tcp_port=status.tcp_port
        )
    if settings.RELAY_NODE_NAME:
        return await face.database_call(_live_row, name)
    return None


def may_inspect(user: AbstractBaseUser | AnonymousUser, owner_id: int | None) -> bool:
    if owner_id is not None and user.pk == owner_id:
        return True
    return bool(settings.RELAY_INSPECT_STAFF and getattr(user, "is_staff", False))


@require_GET
async def page(request: HttpRequest, name: str) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    name = name.lower()
    live = await live_tunnel(name) if protocol.is_valid_subdomain(name) else None
    if live is None or not may_inspect(user, live.owner_id):
        return await _render(request, {"name": name, "state": "missing"}, status=404)
    if live.tcp_port:
        context = {"name": name, "state": "tcp", "tcp_url": addresses.tcp_url(live.tcp_port)}
        return await _render(request, context)
    if not live.inspect:
        return await _render(request, {"name": name, "state": "off"})
    return await _render(
        request,
        {
            "name": name,
            "state": "live",
            "config": {
                "name": name,
                "api": protocol.INSPECT_PATH.format(name=name),
                "keep": settings.RELAY_INSPECT_REQUESTS,
                "body_bytes": settings.RELAY_INSPECT_BODY_BYTES,
                "redacted": protocol.INSPECT_REDACTED,
                "poll_ms": POLL_MS,
                "deadline_ms": POLL_DEADLINE_MS,
                "replay_deadline_ms": replay_deadline_ms(),
                "public_url": addresses.tunnel_url(name, addresses.public_port(request)),
            },
        },
    )


async def _render(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """The page, rendered off the event loop, on the request's own thread as a sync view
    would be (base.html reads the user, a query): not on the relay's database threads,
    where a page would hold registrations behind it."""
    return await database_sync_to_async(render)(request, TEMPLATE, context, status=status)
