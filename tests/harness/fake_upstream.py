"""A fake upstream for sans-IO tests of relay/proxy/exchange.py: no socket, no event loop
tricks. It frames what the relay sends with a real h11 client connection (its bytes are in
`written`) and parses the bytes a test `feed`s it as the tunnel's answer; a wait for more
bytes than were fed ends at its deadline, as a pool socket's does."""

from __future__ import annotations

import asyncio
from typing import Any

import h11

from relay.pool.backpressure import within
from relay.pool.errors import PoolError


class FakeUpstream:
    def __init__(
        self, answer: bytes = b"", *, later: list[bytes] | None = None, closes: bool = False
    ) -> None:
        """`answer` is there from the start; each of `later` arrives only when the relay
        has parsed everything before it and waits for more (a slow tunnel)."""
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)
        self.written = bytearray()
        self.drains = 0
        self.waits = 0  # how often the relay had to wait for more bytes
        self._later = list(later or [])
        self._more = asyncio.Event()
        self._eof = False
        if answer:
            self.feed(answer)
        if closes:
            self.close()

    # --- what a test does ---------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._more.set()

    def close(self) -> None:
        """The tunnel's side closes after what was fed."""
        self._eof = True
        self.h11.receive_data(b"")
        self._more.set()

    def request(self) -> tuple[h11.Request, bytes]:
        """What the relay sent, parsed back by a server-side h11: the head and the body."""
        server = h11.Connection(h11.SERVER)
        server.receive_data(bytes(self.written))
        head = server.next_event()
        assert isinstance(head, h11.Request), head
        body = b""
        while True:
            event = server.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return head, body
            else:
                raise AssertionError(f"request not complete: {event!r}")

    # --- relay.proxy.exchange.Upstream ---------------------------------------------------
    def send(self, *events: Any) -> None:
        for event in events:
            self.written += self.h11.send(event) or b""

    async def drain(self, timeout: float | None = None) -> None:
        self.drains += 1

    def poll_event(self) -> Any:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise PoolError(f"malformed answer: {exc}") from exc

    async def next_event(self, timeout: float, deadline: float | None = None) -> Any:
        async with asyncio.timeout(within(timeout, deadline)):  # as the pool socket's
            while True:
                event = self.poll_event()
                if event is not h11.NEED_DATA:
                    return event
                self.waits += 1
                if self._later:
                    self.feed(self._later.pop(0))
                    continue
                if self._eof:
                    raise PoolError("closed mid-response")
                self._more.clear()
                await self._more.wait()
