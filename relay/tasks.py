"""Tasks that outlive the code that starts them: the relay's loops and batches.

A task copies the context it is created in. Created while Django serves a request (the first
registration starts the account-usage batches; a takeover asks the cluster to flush), that
context holds asgiref's thread-sensitive executor of that one request, which is shut down
when the request ends: any later thread-sensitive `sync_to_async` of the task then fails
with "CurrentThreadExecutor already quit or is broken" (the relay's ORM calls go to its own
database threads, relay/database.py, but the request's context has more in it than that:
who acts, a request's urlconf). So such tasks start in an empty context of their own
(`background`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def background(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """`coro` as a task on the running loop, in a fresh context (see above). Keep the task:
    the loop holds only a weak reference to it."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
