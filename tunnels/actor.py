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
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
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


Handler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


class ActorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return await cast(Awaitable[HttpResponse], self.get_response(request))
        finally:
            _request.reset(token)
