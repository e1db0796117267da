"""The Content-Security-Policy of the pages a user signs in to and works on (the account
page and its forms, the inspector, the device approval, sign-in and sign-up).

These pages show text that others chose (captured requests, device and token names, tunnel
names): should any of it ever escape its escaping, the browser still runs no script and
loads no style but the site's own static files, sends forms nowhere else, and no other site
may frame the page (clickjacking an Approve or Revoke button). Styles and scripts are files
under tunnels/static/ for this reason; `json_script` data blocks are not scripts and stay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseBase

from tunnels import addresses

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADER = "Content-Security-Policy"


def _policy(request: HttpRequest, to_tunnels: bool) -> str:
    if not to_tunnels:
        return POLICY
    # A form's redirects are under form-action too: the sign-in sends a team-only tunnel's
    # visitor back to the tunnel (through /visit/), on the tunnels' own hosts.
    tunnels = addresses.tunnel_url("*", addresses.public_port(request))
    return POLICY.replace("form-action 'self'", f"form-action 'self' {tunnels}")


def _add(request: HttpRequest, answer: HttpResponseBase, to_tunnels: bool) -> HttpResponseBase:
    answer.headers.setdefault(HEADER, _policy(request, to_tunnels))
    return answer


def strict(view: Callable[..., Any], *, to_tunnels: bool = False) -> Callable[..., Any]:
    """`view` with POLICY on every answer (sync or async views alike); `to_tunnels`: its
    forms may end on a tunnel's host (the sign-in)."""
    if asyncio.iscoroutinefunction(view):

        @wraps(view)
        async def wrapped_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return _add(request, await view(request, *args, **kwargs), to_tunnels)

        return wrapped_async

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return _add(request, view(request, *args, **kwargs), to_tunnels)

    return wrapped
