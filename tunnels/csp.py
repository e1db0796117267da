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

from django.http import HttpResponseBase

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADER = "Content-Security-Policy"


def _add(answer: HttpResponseBase) -> HttpResponseBase:
    answer.headers.setdefault(HEADER, POLICY)
    return answer


def strict(view: Callable[..., Any]) -> Callable[..., Any]:
    """`view` with POLICY on every answer (sync or async views alike)."""
    if asyncio.iscoroutinefunction(view):

        @wraps(view)
        async def wrapped_async(*args: Any, **kwargs: Any) -> HttpResponseBase:
            return _add(await view(*args, **kwargs))

        return wrapped_async

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> HttpResponseBase:
        return _add(view(*args, **kwargs))

    return wrapped
