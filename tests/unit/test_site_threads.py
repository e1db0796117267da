"""The site's request threads (tunnelsite/site_threads.py): one thread per request while it
runs, the same few threads (and their database connections) from one request to the next."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from harness.waiting import wait_until, wait_until_async

from tunnelsite.site_threads import ReusedThreads, SiteHandler


def thread_of_request() -> int:
    return threading.get_ident()


async def call_in_request(handler: SiteHandler) -> int:
    """The thread a thread-sensitive call runs on inside one of the handler's requests."""
    seen: list[int] = []

    async def handle(scope, receive, send) -> None:
        seen.append(await sync_to_async(thread_of_request)())
        seen.append(await sync_to_async(thread_of_request)())

    handler.handle = handle  # type: ignore[method-assign]
    await handler({"type": "http"}, None, None)
    assert seen[0] == seen[1]  # the request keeps its thread
    return seen[0]


def test_requests_one_after_another_run_on_the_same_thread():
    handler = SiteHandler()

    async def two() -> tuple[int, int]:
        first = await call_in_request(handler)
        # Given back once its thread is free (a marker queued behind the request's work).
        await wait_until_async(lambda: handler.threads.idle, 10, "the thread back on the stack")
        return first, await call_in_request(handler)

    first, second = asyncio.run(two())

    assert first == second
    assert first != threading.get_ident()


def test_requests_at_the_same_time_each_have_a_thread_of_their_own():
    handler = SiteHandler()
    both_in = threading.Barrier(2, timeout=10)

    def meet() -> int:
        both_in.wait()  # a shared thread would wait here until the barrier's timeout
        return threading.get_ident()

    async def request() -> int:
        executor = handler.threads.take()
        try:
            return await asyncio.wrap_future(executor.submit(meet))
        finally:
            handler.threads.give(executor)

    async def two() -> list[int]:
        return list(await asyncio.gather(request(), request()))

    first, second = asyncio.run(two())

    assert first != second
    wait_until(lambda: len(handler.threads.idle) == 2, 10, "both threads back on the stack")


@pytest.mark.django_db(transaction=True)
def test_a_thread_past_the_kept_ones_closes_its_database_connection_and_stops():
    threads = ReusedThreads(kept=1)
    kept, extra = threads.take(), threads.take()

    closed: list[threading.Thread] = []

    def open_connection() -> tuple[threading.Thread, sqlite3.Connection]:
        """Open this thread's connection; note its close (the test database lives in memory,
        where Django's close keeps the connection, so the close itself is what is seen)."""
        connection.ensure_connection()
        wrapper, close = connection, connection.close

        def noted_close() -> None:
            closed.append(threading.current_thread())
            close()

        wrapper.close = noted_close  # type: ignore[method-assign]
        return threading.current_thread(), connection.connection

    extra_thread, _ = extra.submit(open_connection).result(timeout=10)
    _, kept_raw = kept.submit(open_connection).result(timeout=10)
    threads.give(kept)
    threads.give(extra)

    extra_thread.join(timeout=10)
    assert not extra_thread.is_alive()
    assert closed == [extra_thread]  # on its own thread (connections are per thread)
    wait_until(lambda: threads.idle == [kept], 10, "the kept thread back on the stack")
    assert kept_raw.execute("SELECT 1").fetchone() == (1,)  # kept: open for the next request
    kept.submit(connections.close_all).result(timeout=10)
    kept.shutdown()


def test_a_thread_still_busy_with_an_ended_requests_work_is_not_lent_until_it_is_free():
    """A request can end (its visitor left) while its thread still runs sync code: the next
    request must not queue behind that leftover work on the same thread."""
    threads = ReusedThreads()
    release = threading.Event()
    busy = threads.take()
    leftover = busy.submit(release.wait, 10)  # the ended request's sync code, still running
    threads.give(busy)

    after = threads.take()
    try:
        assert after is not busy
        assert after.submit(threading.get_ident).result(timeout=10)  # served at once
    finally:
        release.set()
    assert leftover.result(timeout=10)
    wait_until(lambda: busy in threads.idle, 10, "the freed thread back on the stack")
    assert threads.take() is busy  # lent again once free, warm
    for executor in (busy, after):
        executor.shutdown()
