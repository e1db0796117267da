"""The relay's database threads (relay/database.py): calls made on the event loop run on a
thread of the relay's own that keeps its connection, in order, with the caller's context;
an answer or an exception comes back; a call nobody waits for any more does not run, nor
one no thread took in time (its caller told the database is busy), nor those right behind
a call that found the database locked; a
connection that cannot be checked after a call is dropped, and the thread lives on;
`async_to_sync` inside a call runs on the caller's loop; under a
synchronous caller (a test case, `async_to_sync`) the call runs on that caller's thread, as
asgiref would run it. That connections are kept, and one the database server dropped is
replaced: tests/cluster/test_database_connections.py, on PostgreSQL (SQLite's in-memory test
database ignores a close, so whether one was closed cannot be seen here)."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connections
from harness.waiting import wait_until_async

from relay import database, protocol

WAIT_S = 10.0
acting: contextvars.ContextVar[str] = contextvars.ContextVar("acting", default="nobody")


def where() -> tuple[str, int]:
    """The thread this runs on and the identity of its open database connection."""
    connection = connections["default"]
    connection.ensure_connection()
    return threading.current_thread().name, id(connection.connection)


pytestmark = pytest.mark.django_db(transaction=True)


def test_calls_run_on_the_relays_one_sqlite_thread_which_keeps_its_connection() -> None:
    async def twice() -> list[tuple[str, int]]:
        return [await database.call(where), await database.call(where)]

    first, second = asyncio.run(twice())
    assert database.thread_count() == 1  # this suite's database is SQLite
    assert first[0] == "relay-database-0"
    assert first == second  # the same thread, the same open connection
    assert threading.current_thread().name != first[0]


def test_a_result_an_exception_and_the_callers_context_cross_over() -> None:
    def fails() -> None:
        raise LookupError("no such row")

    async def calls() -> str:
        acting.set("operator")
        with pytest.raises(LookupError, match="no such row"):
            await database.call(fails)
        return await database.call(acting.get)

    assert asyncio.run(calls()) == "operator"


def test_calls_keep_their_order() -> None:
    seen: list[int] = []

    async def many() -> None:
        await asyncio.gather(*(database.call(seen.append, n) for n in range(50)))

    asyncio.run(many())
    assert seen == list(range(50))


def test_a_call_whose_caller_left_before_it_started_does_not_run() -> None:
    busy, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold() -> None:
        busy.set()
        assert release.wait(WAIT_S), "the test never released the thread"

    async def scene() -> None:
        holding = asyncio.ensure_future(database.call(hold))
        await asyncio.to_thread(busy.wait, WAIT_S)  # the one thread is taken
        queued = asyncio.ensure_future(database.call(ran.append, "queued"))
        await asyncio.sleep(0)  # queued behind `hold`
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued  # its caller has left (the cancellation delivered), then:
        release.set()
        await holding
        await database.call(ran.append, "after")  # runs after the cancelled one's turn

    asyncio.run(scene())
    assert ran == ["after"]


def test_a_call_no_thread_takes_in_time_is_dropped_and_its_caller_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "DATABASE_QUEUE_WAIT_S", 0.2)
    busy, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold() -> str:
        busy.set()
        assert release.wait(WAIT_S), "the test never released the thread"
        return "held"

    async def scene() -> str:
        holding = asyncio.ensure_future(database.call(hold))
        await asyncio.to_thread(busy.wait, WAIT_S)
        with pytest.raises(database.QueueTimeout) as raised:
            await database.call(ran.append, "queued")
        assert isinstance(raised.value, OperationalError)  # "database busy" to a registration
        release.set()
        held = await holding  # started before its wait ran out: waited for, not dropped
        await database.call(ran.append, "after")
        return held

    assert asyncio.run(scene()) == "held"
    assert ran == ["after"]


def test_a_call_that_finds_the_database_locked_sheds_the_calls_right_behind_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "DATABASE_SHED_S", 0.5)
    ran: list[str] = []

    def locked() -> None:
        raise OperationalError("database is locked")

    async def scene() -> None:
        with pytest.raises(OperationalError, match="locked"):
            await database.call(locked)
        with pytest.raises(database.QueueTimeout, match="the database is busy"):
            await database.call(ran.append, "shed")  # at once, not run
        assert ran == []

        async def tried_again() -> bool:
            try:
                await database.call(ran.append, "again")
            except database.QueueTimeout:
                return False
            return True

        await wait_until_async(tried_again, WAIT_S, "a call after the shedding")

    asyncio.run(scene())
    assert ran == ["again"]


def test_a_connection_that_cannot_be_checked_is_dropped_and_the_thread_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreadable() -> None:
        raise OSError("the server went away")

    def sabotage() -> None:
        connection = connections["default"]
        connection.ensure_connection()
        connection.close_if_unusable_or_obsolete = unreadable  # type: ignore[method-assign]

    def repair() -> None:
        del connections["default"].close_if_unusable_or_obsolete

    async def scene() -> tuple[str, int]:
        await database.call(sabotage)
        try:
            return await database.call(where)
        finally:
            await database.call(repair)

    thread, _ = asyncio.run(scene())
    assert thread == "relay-database-0"
    assert "could not be checked: OSError('the server went away')" in caplog.text


def test_async_to_sync_inside_a_call_runs_on_the_callers_loop() -> None:
    async def which_loop() -> int:
        return id(asyncio.get_running_loop())

    async def scene() -> tuple[int, int]:
        inside = await database.call(async_to_sync(which_loop))
        return inside, id(asyncio.get_running_loop())

    inside, caller = asyncio.run(scene())
    assert inside == caller


def test_under_a_synchronous_caller_the_call_runs_on_its_thread() -> None:
    async def on_the_loop() -> str:
        return await database.call(lambda: threading.current_thread().name)

    assert async_to_sync(on_the_loop)() == threading.current_thread().name
