"""The relay's database threads: where every ORM call made on the event loop runs.

`call(fn, *args)` runs the synchronous `fn` (an ORM query, a `Records` method) on one of a
fixed set of threads and returns its result, or raises its exception, on the loop.

Why not channels' `database_sync_to_async`: inside a request Django serves, asgiref runs
every such call on a thread of that request's own, started for it, with a database
connection opened for the call and closed after it (CONN_MAX_AGE's default, 0, which a
site served over ASGI keeps: its request threads come and go). A registration paid for a
thread, a connection (SQLite registers ~30 functions on each) and its close: most of the ~5
ms of relay CPU a registration cost. And registrations at once each held a connection of
their own, so they queued on SQLite's write lock by sleeping in its busy handler, up to its
timeout.

What runs here is the relay's short ORM calls (the records port, a registration's grant, a
sign-in check): not page rendering, which runs on the request's own thread as Django's
views do (tunnels/inspector.py), so a page never holds registrations behind it.

Here:
- the threads start on first use and live as long as the relay: SQLite gets one
  (`protocol.DATABASE_THREADS_SQLITE`), so the relay's own writes never wait on each other's
  lock; a database server a few (`protocol.DATABASE_THREADS_SERVER`), so one slow query does
  not hold every registration behind it;
- each thread keeps its connection between calls. After a call that saw an error the
  connection is checked and closed if unusable, and on PostgreSQL each call checks it first
  (CONN_HEALTH_CHECKS: one `SELECT 1`; TCP keepalives bound a server that went silent,
  tunnelsite/settings.py): a restarted database costs no failed registration;
- calls wait in one queue, taken in order. Every caller awaits its answer, so the queue
  holds no more than the callers waiting, and those are bounded where they start (the
  site's connections, a team lookup's cap, one flush at a time). A call not started within
  `protocol.DATABASE_QUEUE_WAIT_S` (the threads held by a database that is locked or slow)
  is dropped and its caller gets `QueueTimeout`, an OperationalError: a registration is
  answered "database busy" instead of waiting out every call queued before it. A call
  whose caller was cancelled before it started does not run either; one that started is
  waited for (the database's own timeouts bound it: a dropped insert could still commit);
- a call that fails with an OperationalError (SQLite locked past its 5 s busy timeout, a
  server that does not answer) sheds the load for `protocol.DATABASE_SHED_S`: the calls a
  thread takes meanwhile fail at once with QueueTimeout instead of each waiting out the
  same lock in turn. With SQLite locked by another process and 20 registrations a second
  arriving, each was answered 503 within ~5 s this way, where without it half waited
  10-19 s (a registration makes two calls, each could wait its turn and then the lock);
- a call runs in a copy of its caller's context (who acts, tunnels/actor.py), and an
  `async_to_sync` inside it runs on the caller's loop, as under asgiref's threads;
- the threads are daemons: a database that stops answering never holds the relay's exit;
- a synchronous caller above the loop (Django's test client and test cases, `async_to_sync`)
  keeps asgiref's rule: its own thread runs the call, as that thread holds the test's
  transaction. The relay's loop has none: Twisted runs it on the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.db import OperationalError, connections

from relay import protocol

T = TypeVar("T")
logger = logging.getLogger(__name__)


QUEUED, STARTED, DROPPED = 0, 1, 2
_claims = threading.Lock()  # a call's ticket changes state under it
# Until when (time.monotonic()) calls fail at once: a call before them found the database
# locked or away (see the module's docstring).
_shed_until = [0.0]
SHED_MESSAGE = "the database is busy: a call just before this one found it locked or away"


class QueueTimeout(OperationalError):
    """No database thread took the call within DATABASE_QUEUE_WAIT_S."""


class _Ticket:
    """A call's place in the queue: QUEUED until a thread starts it (STARTED) or its caller
    gives up on it (DROPPED), whichever comes first (under `_claims`)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = QUEUED


_Job = tuple[
    _Ticket,
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]

_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_threads: list[threading.Thread] = []
_starting = threading.Lock()


async def call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on a database thread; its result or its exception here."""
    loop = asyncio.get_running_loop()
    if _sync_caller_above(loop):
        return await database_sync_to_async(fn)(*args, **kwargs)
    if not _running():
        _start()
    ticket = _Ticket()
    future: asyncio.Future[T] = loop.create_future()
    _jobs.put((ticket, loop, future, contextvars.copy_context(), fn, args, kwargs))
    try:
        return await asyncio.wait_for(asyncio.shield(future), protocol.DATABASE_QUEUE_WAIT_S)
    except TimeoutError:
        if _drop(ticket):
            raise QueueTimeout(
                f"the database is busy: no database thread was free for "
                f"{protocol.DATABASE_QUEUE_WAIT_S:g} s (locked, or slow to answer)"
            ) from None
        return await future  # it started meanwhile: its answer
    except asyncio.CancelledError:
        _drop(ticket)
        raise


def _drop(ticket: _Ticket) -> bool:
    """Give up a call that has not started; False when it has."""
    with _claims:
        if ticket.state == QUEUED:
            ticket.state = DROPPED
            return True
    return False


def thread_count() -> int:
    """How many threads the configured database gets (see the module's docstring)."""
    if connections["default"].vendor == "sqlite":  # SpatiaLite too
        return protocol.DATABASE_THREADS_SQLITE
    return protocol.DATABASE_THREADS_SERVER


def _running() -> bool:
    return bool(_threads) and all(thread.is_alive() for thread in _threads)


def _sync_caller_above(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a synchronous thread waits on this loop (asgiref's AsyncToSync), which is
    where asgiref runs thread-sensitive code: a test case's thread, with its transaction."""
    return (
        getattr(AsyncToSync.executors, "current", None) is not None
        or loop in AsyncToSync.loop_thread_executors
    )


def _start() -> None:
    """Start the threads that are not running: all of them at first use."""
    with _starting:
        while len(_threads) < thread_count():
            _threads.append(threading.Thread(target=_serve, daemon=True))
        for number, thread in enumerate(_threads):
            if not thread.is_alive():
                if thread.ident is not None:  # it ran and ended: a fresh one in its place
                    thread = _threads[number] = threading.Thread(target=_serve, daemon=True)
                thread.name = f"relay-database-{number}"
                thread.start()


def _serve() -> None:
    while True:
        _run(_jobs.get())


def _run(job: _Job) -> None:
    ticket, loop, future, context, fn, args, kwargs = job
    with _claims:
        if ticket.state == DROPPED:  # its caller gave up before it started: nobody wants it
            return
        ticket.state = STARTED
    if time.monotonic() < _shed_until[0]:
        _answer(loop, future, None, QueueTimeout(SHED_MESSAGE))
        return
    # Where asgiref's AsyncToSync sends a coroutine from a thread SyncToAsync started: the
    # caller's loop (a registry read on the relay's loop, never on a new loop here).
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    SyncToAsync.threadlocal.task_context = []
    try:
        result = context.run(fn, *args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
        if isinstance(exc, OperationalError):
            _shed_until[0] = time.monotonic() + protocol.DATABASE_SHED_S
        _answer(loop, future, None, exc)
    else:
        _answer(loop, future, result, None)
    finally:
        _tidy()


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop is closed: the relay is stopping, nobody waits
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the call ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _tidy() -> None:
    """Keep this thread's connections, unless a call left one unusable. Django's
    CONN_MAX_AGE (0: close after each request) is for its request threads; these threads
    keep theirs for the relay's life, so the close-by-age is taken off first. Whatever
    goes wrong here ends in a closed connection (the next call opens a new one), never in
    the end of the thread."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close_at = None
            connection.close_if_unusable_or_obsolete()
        except Exception as exc:  # noqa: BLE001 - a broken connection: drop it
            logger.warning("closing a database connection that could not be checked: %r", exc)
            with contextlib.suppress(Exception):
                connection.close()
