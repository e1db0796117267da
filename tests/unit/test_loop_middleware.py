"""The site's middlewares on the event loop (tunnelsite/loop_middleware.py): the handler the
relay serves (tunnelsite.asgi's SiteHandler) answers a request for an async view with no
thread started, where Django's own handler starts one per request; what must still reach the
database does so on the thread (a sign-in: CSRF's check of the form, the session saved); and
every middleware in MIDDLEWARE is covered, so adding one that hops to a thread fails here."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.middleware.csrf import CsrfViewMiddleware

from tunnelsite.loop_middleware import SiteHandler, chain_of, unadapted

HOST = b"localhost"
PASSWORD = "a-long-enough-password-1"


async def exchange(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through the ASGI app, in process: status, headers, body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", HOST), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # no disconnect: the handler cancels this when done
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with asyncio.timeout(10):
        await app(scope, receive, send)
    start = sent[0]
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def threads_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the threads started while the test runs."""
    started: list[str] = []
    original = threading.Thread.start

    def counted(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", counted)
    yield started


def test_every_middleware_of_the_site_runs_on_the_loop() -> None:
    handler = SiteHandler()
    assert unadapted(handler) == []
    assert len(chain_of(handler)) == len(__import__("django.conf").conf.settings.MIDDLEWARE)


def test_an_async_view_is_answered_without_a_thread(threads_started: list[str]) -> None:
    site = SiteHandler()
    status, _, body = asyncio.run(exchange(site, "GET", "/healthz", []))
    assert status == 200 and b'"ok"' in body
    assert threads_started == []
    # Django's own handler, for the same request: a thread of the request's own.
    stock = ASGIHandler()
    status, _, _ = asyncio.run(exchange(stock, "GET", "/healthz", []))
    assert status == 200
    assert threads_started != []


@pytest.mark.django_db(transaction=True)
def test_a_sign_in_still_checks_the_form_and_saves_the_session_on_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_user_model().objects.create_user("signer", password=PASSWORD)
    on: dict[str, list[str]] = {"check": [], "save": []}
    for key, owner, name in (
        ("check", CsrfViewMiddleware, "_check_token"),
        ("save", SessionStore, "save"),
    ):
        original = getattr(owner, name)

        def recorded(*args: Any, _original: Any = original, _key: str = key, **kw: Any) -> Any:
            on[_key].append(threading.current_thread().name)
            return _original(*args, **kw)

        monkeypatch.setattr(owner, name, recorded)
    site = SiteHandler()

    async def sign_in(token_in_form: bool) -> tuple[int, list[tuple[bytes, bytes]]]:
        status, headers, page = await exchange(site, "GET", "/accounts/login/", [])
        assert status == 200
        cookie = next(v for k, v in headers if k.lower() == b"set-cookie" and v.startswith(b"csrf"))
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match is not None
        form = b"username=signer&password=" + PASSWORD.encode()
        if token_in_form:
            form += b"&csrfmiddlewaretoken=" + match.group(1)
        status, headers, _ = await exchange(
            site,
            "POST",
            "/accounts/login/",
            [
                (b"cookie", cookie.split(b";", 1)[0]),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"origin", b"http://localhost"),
            ],
            form,
        )
        return status, headers

    status, _ = asyncio.run(sign_in(token_in_form=False))
    assert status == 403  # CSRF's check of the form still runs
    assert not Session.objects.exists()
    status, headers = asyncio.run(sign_in(token_in_form=True))
    assert status == 302
    assert any(k.lower() == b"set-cookie" and b"sessionid=" in v for k, v in headers)
    assert Session.objects.count() == 1  # saved
    # Both CSRF checks of the form and the session's save ran on a request's thread.
    assert len(on["check"]) == 2 and len(on["save"]) >= 1
    assert threading.main_thread().name not in on["check"] + on["save"]


# Each line SiteHandler.handle changed ("# changed"), with the line of Django's it replaces.
CHANGED = {
    "signals.request_started.send(sender=self.__class__, scope=scope)": (
        "await signals.request_started.asend(sender=self.__class__, scope=scope)"
    ),
    "await _close(error_response)": "await sync_to_async(error_response.close)()",
    "await _close(response)": "await sync_to_async(response.close)()",
}
# Lines Django's has no counterpart of: for mypy (Django's create_request returns one or the
# other), and the finished request's state let go (tests/sockets/test_request_cycles.py).
ADDED = ("assert error_response is not None", "_forget(request)")


def code_lines(function: Any) -> list[str]:
    """A function's statements, one per line, without comments, docstring, blank lines or
    type annotations."""
    lines = []
    for line in inspect.getsource(function).splitlines():
        line = re.sub(r": Any|\) -> (Any|None):", lambda m: "):" if ")" in m[0] else "", line)
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith(ADDED):
            lines.append(line)
    body = "\n".join(lines)
    body = re.sub(r'""".*?"""\n', "", body, flags=re.DOTALL)  # the docstring
    return body.splitlines()


def test_site_handle_is_djangos_but_for_the_two_signal_sends() -> None:
    ours = [CHANGED.get(line, line) for line in code_lines(SiteHandler.handle)]
    marked = [
        line.split("#", 1)[0].strip()
        for line in inspect.getsource(SiteHandler.handle).splitlines()
        if line.endswith("# changed")
    ]
    assert marked == list(CHANGED)
    assert ours == code_lines(ASGIHandler.handle)
    # The request is let go only after its response was sent and closed (see _forget).
    lines = [
        line.split("#", 1)[0].strip() for line in inspect.getsource(SiteHandler.handle).splitlines()
    ]
    assert lines[lines.index("_forget(request)") - 1] == "await _close(response)"


# Django's listen_for_disconnect, which SiteHandler's replaces (returning where it raises).
DJANGOS_LISTEN_FOR_DISCONNECT = [
    "async def listen_for_disconnect(self, receive):",
    "message = await receive()",
    'if message["type"] == "http.disconnect":',
    "raise RequestAborted()",
    'assert False, "Invalid ASGI message after request body: %s" % message["type"]',
]


def test_listen_for_disconnect_replaces_djangos_as_it_is() -> None:
    """A Django that changes its listen_for_disconnect must be looked at here first."""
    assert code_lines(ASGIHandler.listen_for_disconnect) == DJANGOS_LISTEN_FOR_DISCONNECT


def test_the_request_signals_have_only_djangos_in_memory_receivers() -> None:
    """SiteHandler sends request_started and request_finished on the loop, synchronously
    (see its docstring): a receiver added later, async (Signal.send would fail on the loop)
    or doing I/O (it would block the loop), must be looked at there first."""
    receivers = {
        f"{signal_name}:{receiver.__module__}.{receiver.__qualname__}"
        for signal_name, signal in (
            ("started", signals.request_started),
            ("finished", signals.request_finished),
        )
        for group in signal._live_receivers(None)
        for receiver in group
    }
    assert receivers == {
        "started:django.db.reset_queries",
        "started:django.db.close_old_connections",
        "finished:django.db.close_old_connections",
        "finished:django.core.handlers.base.reset_urlconf",
        "finished:django.core.cache.close_caches",
    }
