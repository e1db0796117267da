"""Django's own middlewares run on the relay's event loop, without a thread per request.

Under ASGI Django runs each `MiddlewareMixin` middleware's `process_request` and
`process_response` (and CSRF's `process_view`) through asgiref's thread-sensitive
`sync_to_async`: every request to the site, a registration included, started a thread of its
own, hopped to it and back about thirteen times and joined it at the end. That was a third
of the relay's CPU while registrations came in (py-spy, 1,000 registrations from 32
connections). What these methods do is work in memory for almost every request; the few
that touch the database or a request body still go to the thread, as Django would send them:

- SecurityMiddleware, CommonMiddleware, XFrameOptionsMiddleware: headers, redirects and URL
  resolving, always in memory.
- AuthenticationMiddleware: `process_request` puts a lazy user on the request (it is read
  from the database only when a view asks: on the view's own thread, or with `auser`).
- SessionMiddleware: `process_request` makes a lazy session; `process_response` saves a
  modified session (or every one, SESSION_SAVE_EVERY_REQUEST): then on the thread.
- MessageMiddleware: `process_response` stores messages (the session: the database) when a
  view read or added some: then on the thread.
- CsrfViewMiddleware: its secret comes from a cookie (from the session, with
  CSRF_USE_SESSIONS: then on the thread); `process_view` of an unsafe method reads the
  form body for the token: on the thread, unless the view is exempt.

`keep_on_the_loop` is applied to the site's ASGI handler once its chain is built (the
settings and MIDDLEWARE stay Django's, so `check --deploy` sees them as they are). A
middleware of a class not listed here keeps Django's behaviour; `unadapted` names them, and
tests/unit/test_loop_middleware.py fails while any of MIDDLEWARE's is.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix
from django.utils.deprecation import MiddlewareMixin

RequestTest = Callable[[HttpRequest], bool]
ResponseTest = Callable[[HttpRequest, HttpResponseBase], bool]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")  # RFC 9110's, as CsrfViewMiddleware's


def _always(*_: object) -> bool:
    return True


def _session_not_saved(request: HttpRequest, response: HttpResponseBase) -> bool:
    try:
        modified = request.session.modified
    except AttributeError:  # no session (or not one): Django's process_response passes too
        return True
    return not (modified or settings.SESSION_SAVE_EVERY_REQUEST)


def _no_messages_stored(request: HttpRequest, response: HttpResponseBase) -> bool:
    storage = getattr(request, "_messages", None)
    return storage is None or not (storage.used or storage.added_new)


def _csrf_secret_in_cookie(request: HttpRequest, *_: object) -> bool:
    return not settings.CSRF_USE_SESSIONS


def _csrf_view_without_body(request: HttpRequest, callback: Callable[..., Any], *_: object) -> bool:
    return _csrf_secret_in_cookie(request) and (
        getattr(request, "csrf_processing_done", False)
        or getattr(callback, "csrf_exempt", False)
        or request.method in SAFE_METHODS
    )


# For each class: whether its process_request, process_response and process_view run in
# memory for this request (True: inline on the loop; False: on the thread, as Django does).
IN_MEMORY: dict[type[MiddlewareMixin], tuple[RequestTest, ResponseTest, Callable[..., bool]]] = {
    SecurityMiddleware: (_always, _always, _always),
    CommonMiddleware: (_always, _always, _always),
    XFrameOptionsMiddleware: (_always, _always, _always),
    AuthenticationMiddleware: (_always, _always, _always),
    SessionMiddleware: (_always, _session_not_saved, _always),
    MessageMiddleware: (_always, _no_messages_stored, _always),
    CsrfViewMiddleware: (_csrf_secret_in_cookie, _csrf_secret_in_cookie, _csrf_view_without_body),
}


async def _run(inline: bool, method: Callable[..., Any], *args: Any) -> Any:
    if inline:
        return method(*args)
    return await sync_to_async(method, thread_sensitive=True)(*args)


async def _acall(self: MiddlewareMixin, request: HttpRequest) -> HttpResponseBase:
    """MiddlewareMixin.__acall__, with each method inline when IN_MEMORY says so."""
    request_test, response_test, _ = IN_MEMORY[type(self)]
    response = None
    if hasattr(self, "process_request"):
        response = await _run(request_test(request), self.process_request, request)
    response = response or await self.get_response(request)  # type: ignore[misc]
    if hasattr(self, "process_response"):
        response = await _run(
            response_test(request, response), self.process_response, request, response
        )
    return response


def _view_on_the_loop(middleware: MiddlewareMixin) -> Callable[..., Any]:
    view_test = IN_MEMORY[type(middleware)][2]
    process_view = middleware.process_view  # type: ignore[attr-defined]

    async def process_view_on_the_loop(
        request: HttpRequest, callback: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        inline = view_test(request, callback, args, kwargs)
        return await _run(inline, process_view, request, callback, args, kwargs)

    return process_view_on_the_loop


def chain_of(handler: BaseHandler) -> list[Any]:
    """The layers of `handler`'s chain, outermost first: each middleware instance (Django
    wraps each in `convert_exception_to_response`, which keeps it as `__wrapped__`) and each
    adapter Django put between a synchronous layer and an asynchronous one (a thread hop),
    down to the handler's own `_get_response(_async)`."""
    found: list[Any] = []
    layer = getattr(handler, "_middleware_chain", None)
    while layer is not None:
        if isinstance(layer, SyncToAsync | AsyncToSync):
            found.append(layer)
        inner = getattr(layer, "__wrapped__", None)
        if inner is None or getattr(inner, "__self__", None) is handler:
            break  # the bottom: Django's own view-calling method
        if isinstance(layer, SyncToAsync | AsyncToSync):
            layer = inner
            continue
        found.append(inner)
        layer = getattr(inner, "get_response", None)
    return found


def keep_on_the_loop(handler: BaseHandler) -> None:
    """Give the listed middlewares of `handler`'s (async) chain the loop's `__acall__`, and
    CSRF's adapted `process_view` its loop version."""
    for middleware in chain_of(handler):
        if type(middleware) not in IN_MEMORY or not getattr(middleware, "async_mode", False):
            continue
        middleware.__acall__ = types.MethodType(_acall, middleware)
        if hasattr(middleware, "process_view"):
            adapted = _view_on_the_loop(middleware)
            views = handler._view_middleware  # type: ignore[attr-defined]
            for index, entry in enumerate(views):
                if isinstance(entry, SyncToAsync) and _bound_to(entry.func, middleware):
                    views[index] = adapted


def unadapted(handler: BaseHandler) -> list[str]:
    """What in the chain still hops to a thread for every request: a `MiddlewareMixin` of a
    class IN_MEMORY does not list, or Django's adapter around a synchronous middleware."""
    names = []
    for layer in chain_of(handler):
        if isinstance(layer, SyncToAsync | AsyncToSync):
            names.append(f"{type(layer).__name__}({getattr(layer, '__qualname__', layer)})")
        elif isinstance(layer, MiddlewareMixin) and type(layer) not in IN_MEMORY:
            names.append(f"{type(layer).__module__}.{type(layer).__qualname__}")
    return names


def _bound_to(method: Any, instance: object) -> bool:
    return isinstance(method, types.MethodType) and method.__self__ is instance


class SiteHandler(ASGIHandler):
    """Django's ASGI handler, with `keep_on_the_loop` applied to its chain, and its two
    signal sends made without a thread when no thread is needed.

    Django sends `request_started` and, in `response.close()`, `request_finished` through
    `sync_to_async`: the request's own thread, started for them alone when the view and
    the middlewares used none. Their receivers (Django's close_old_connections,
    reset_queries, reset_urlconf) act on the database connections of the thread they run
    on: a request's thread is new at `request_started`, so they have nothing to do there,
    and at `request_finished` they matter only when the request's thread ran database
    code (a sync view: the admin), where they still run. `handle` is Django 5.2's, with
    those two sends changed (tests/unit/test_loop_middleware.py pins it to Django's).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async)
        if is_async:
            keep_on_the_loop(self)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        # Receive the HTTP request body as a stream object.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # Request is complete and can be served.
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)  # changed
        # Get the request and check for basic issues.
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None  # Django's create_request gives one or the other
            body_file.close()
            await self.send_response(error_response, send)
            await _close(error_response)  # changed
            return

        async def process_request(request: Any, send: Any) -> Any:
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                # Client disconnected during send_response (ignore exception).
                pass

            return response

        # Try to catch a disconnect while getting response.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Now wait on both tasks (they may have both finished by now).
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    # Ignore client disconnects.
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                # Allow views to handle cancellation.
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    # Task re-raised the CancelledError as expected.
                    pass

        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await _close(response)  # changed
            _forget(request)  # added: see _forget

        body_file.close()

    async def listen_for_disconnect(self, receive: Any) -> None:
        """Django's, returning at `http.disconnect` where Django's raises RequestAborted,
        which `handle` only catches and ignores. The relay says `http.disconnect` after
        every response, so every request to the site ended that way, and the exception
        left a reference cycle: its traceback holds `handle`'s frame, whose `tasks` hold
        the task that holds the exception. With it went the request, its session, its
        headers and its connection, all waiting for the cyclic collector
        (tests/sockets/test_request_cycles.py)."""
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        # This should never happen (Django's own check).
        raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")


def _forget(request: HttpRequest) -> None:
    """Drop what a finished request holds. Django's middlewares tie a request into cycles
    (MessageMiddleware's storage holds the request, AuthenticationMiddleware's lazy `user`
    and `auser` close over it), and with it its session, headers, body spool and the
    relay's objects of the connection: every request to the site left them all for the
    cyclic collector (tests/sockets/test_request_cycles.py). Only once its response is sent
    and closed: a request whose visitor left first may still be read by a thread Django
    started for it and does not wait for (an error page's `response_for_exception` runs
    with thread_sensitive=False), so that rare request is left to the collector."""
    request.__dict__.clear()


def request_thread_used() -> bool:
    """Whether this request (its ThreadSensitiveContext) has had a thread of its own."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    return context is not None and context in SyncToAsync.context_to_thread_executor


async def _close(response: HttpResponseBase) -> None:
    """`response.close()`, which sends request_finished: on the request's thread when it
    has one (its database connections are closed there), else here."""
    if request_thread_used():
        await sync_to_async(response.close)()
    else:
        response.close()
