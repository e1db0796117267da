"""Waiting without sleeping: poll a condition until a deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

IO_TIMEOUT_S = 10.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = IO_TIMEOUT_S, message: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {message or predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def unique_name(prefix: str = "t") -> str:
    """A fresh, valid subdomain."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
