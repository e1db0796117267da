"""Django's ASGI handler with its request threads reused, not made and joined per request.

Django runs each request in `ThreadSensitiveContext()`, which gives the request a worker
thread of its own (our sync middleware chain, and every thread-sensitive `sync_to_async` the
view makes, such as the registration's token lookup) and joins that thread when the request
ends: a thread started and stopped per request, and with it a database connection opened and
closed per request (connections are per thread). Here a request borrows a one-thread executor
from a small stack of idle ones and gives it back when done, so the thread, and its database
connection (CONN_MAX_AGE in settings.py), serve the next request: the model of a WSGI server's
thread pool. Each request still has a thread to itself while it runs; past `KEPT_IDLE`
executors in use at once, more are made, and one given back to a full stack closes its
database connections on its own thread and stops, so threads and connections stay bounded.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

# Idle request threads kept for the next requests (each with its database connection): the
# site's requests in flight at once on a busy relay (registrations, account pages, API calls).
KEPT_IDLE = 8


def _close_connections() -> None:
    connections.close_all()


def _free() -> None:
    """Queued behind a request's work: when it runs, the thread has nothing left to do."""


class ReusedThreads:
    """A stack of idle one-thread executors: the last given back is the next taken (warm)."""

    def __init__(self, kept: int = KEPT_IDLE) -> None:
        self.kept = kept
        self.idle: list[ThreadPoolExecutor] = []
        self.returning = 0  # given back, their thread still finishing a request's work
        self._lock = threading.Lock()  # `give` runs on the loop, `_back` on a request thread

    def take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self.idle:
                return self.idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="site-request")

    def give(self, executor: ThreadPoolExecutor) -> None:
        """Keep `executor` for the next request once its thread is free; past `kept`, close
        its thread's database connections on that thread (after any work still queued on it)
        and let it stop.

        A request can end while its thread still runs sync code (the visitor left and the
        request's task was cancelled; the thread cannot be): the executor goes back on the
        stack only when that work is done (a marker queued behind it), so no request ever
        waits behind another's leftover work. A thread stuck for good is never taken again."""
        with self._lock:
            keep = len(self.idle) + self.returning < self.kept
            if keep:
                self.returning += 1
        if not keep:
            executor.submit(_close_connections)
            executor.shutdown(wait=False)
            return
        executor.submit(_free).add_done_callback(lambda _: self._back(executor))

    def _back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            self.returning -= 1
            self.idle.append(executor)


class SiteHandler(ASGIHandler):
    """`ASGIHandler`, with each request's thread borrowed from `ReusedThreads`."""

    def __init__(self) -> None:
        super().__init__()
        self.threads = ReusedThreads()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give(executor)
