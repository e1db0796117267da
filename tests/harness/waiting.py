"""Waiting without sleeping: poll a condition until a deadline.

The one place in tests/ where a loop sleeps (tests/structure/test_no_poll_loops.py keeps it so):
`poll` answers "did it happen in time?", `wait_until` fails the test when it did not, and
`wait_until_async` is the same for code that must let the event loop run in between.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

IO_TIMEOUT_S = 10.0
FIRST_DELAY_S = 0.005  # short at first: most conditions hold within a few milliseconds
MAX_DELAY_S = 0.1  # then at most this late after the condition starts to hold


def poll(predicate: Callable[[], Any], timeout: float = IO_TIMEOUT_S) -> Any:
    """The first truthy value of `predicate` within `timeout` seconds, else that last falsy one.

    `predicate` is called at least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY_S
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, MAX_DELAY_S)


def wait_until(
    predicate: Callable[[], Any], timeout: float = IO_TIMEOUT_S, message: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    value = poll(predicate, timeout)
    if not value:
        pytest.fail(f"timed out after {timeout:g} s waiting for {message or predicate}")
    return value


async def wait_until_async(
    predicate: Callable[[], Any], timeout: float = IO_TIMEOUT_S, message: str = ""
) -> Any:
    """`wait_until` inside an event loop: the loop runs between two polls, and `predicate`
    may be a coroutine function (awaited each time)."""
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY_S
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {message or predicate}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S / 10)  # in-process state: poll it often


def unique_name(prefix: str = "t") -> str:
    """A fresh, valid subdomain."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
