"""Who is acting, for the `operator_action` log line (tunnels/control.py): the user signed in to
the request being served (the admin, the dashboard, an account page), else what
`acting(...)` names (a management command), else "system" (a signal, a shell).

`ActorMiddleware` remembers the request in a context variable, which follows the request into
the sync views and `sync_to_async` threads that Django runs it in; the user is read only when
a line is written (reading `request.user` may query the database, which the middleware, on
every request of the site, must not do).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

SYSTEM = "system"

_request: ContextVar[HttpRequest | None] = ContextVar("tunnelsite_acting_request", default=None)
_named: ContextVar[str] = ContextVar("tunnelsite_acting_name", default=SYSTEM)


def current() -> str:
    """The acting user's username (and id), or the command's name, or "system"."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    if user is not None and user.is_authenticated:
        return f"{user.get_username()} (user {user.pk})"
    return _named.get()


@contextlib.contextmanager
def acting(name: str) -> Iterator[None]:
    """What a management command's actions are logged as done by."""
    token = _named.set(name)
    try:
        yield
    finally:
        _named.reset(token)


class ActorMiddleware:
    """Synchronous only, and last in MIDDLEWARE: every middleware above it then runs in
    Django's sync mode, the whole chain in one hop to the request's thread
    (tunnelsite/site_threads.py). Were the last one async-capable, every Django middleware
    between it and WhiteNoise's (sync only) would run in async mode, each of its hooks a
    thread hop of its own: the most of a registration's CPU before this."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
