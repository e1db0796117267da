"""Backpressure and disconnect signals from the visitor's connection.

Daphne gives an ASGI app no backpressure: `send` always returns at once and Twisted keeps
whatever does not fit in the socket. The relay's server (`relay.edge.server`) puts a `Flow` in
`scope["extensions"]["tunnelsite.flow"]`; it is a Twisted push producer registered on the
response, so Twisted pauses it when the visitor's send buffer is full, and the relay stops
reading the pool socket until Twisted resumes it. It also cancels the relay's task when the
visitor goes away, so a socket is never held for a visitor who left.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Flow:
    def __init__(self, request: Any) -> None:
        self.request = request
        self.paused = False
        self.gone = False
        self.task: asyncio.Future[Any] | None = None
        self._resumed: asyncio.Future[None] | None = None
        self._registered = False

    # --- IPushProducer (called by Twisted on the same loop) ---------------------------------
    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        waiter = self._resumed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stopProducing(self) -> None:  # noqa: N802
        self.disconnected()

    # --- used by the relay ------------------------------------------------------------------
    def register(self) -> None:
        channel = self.request.channel
        if channel is None or self._registered:
            return
        self.request.registerProducer(self, True)
        self._registered = True
        if getattr(channel, "_waitingForTransport", False):
            self.paused = True

    def unregister(self) -> None:
        if self._registered:
            self._registered = False
            if self.request.channel is not None:
                self.request.unregisterProducer()

    async def writable(self) -> None:
        while self.paused and not self.gone:
            self._resumed = asyncio.get_running_loop().create_future()
            try:
                await self._resumed
            finally:
                self._resumed = None

    def disconnected(self) -> None:
        """The visitor's connection is gone: stop the relay's work for it."""
        if self.gone:
            return
        self.gone = True
        self.paused = False
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    def abort(self) -> None:
        """Cut the visitor's connection (a response failed after its head was sent)."""
        if self.gone:  # gone already: Twisted's TLS layer has no state left to abort
            return
        channel = self.request.channel
        if channel is not None and channel.transport is not None:
            channel.transport.abortConnection()
