"""The relay's side of one pool socket: its h11 parser, gathered writes, and the watcher.

The relay writes plain HTTP/1.1 requests on a pool socket and may reuse it for many
sequential requests (keep-alive, never pipelined). Writes are gathered until the next wait,
so a small answer leaves in one write. The fast path (fast_path.py) reads the socket into
`raw` instead, and gives those bytes to h11 (`to_h11`) when it does not take a request.
While the local app is slow to answer, a task watches the pool socket (`watch`), so a relay
that gives up is noticed at once; bytes that arrive meanwhile go to h11 (to `raw` while
`fast`), so none are lost.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import h11

from .limits import (
    CHUNK_BYTES,
    LOCAL_IDLE_TIMEOUT_S,
    POOL_IDLE_TIMEOUT_S,
    POOL_MAX_HEADER_BYTES,
    WATCH_POOL_AFTER_S,
)
from .local import LocalConnection
from .local_side import LocalFailed, LocalSide
from .target import ProxyObserver
from .tasks import cancel


class PoolClosed(Exception):
    """The relay closed the pool socket (or broke HTTP) in the middle of an exchange."""


class PoolSocket:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observer: ProxyObserver
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.observer = observer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=POOL_MAX_HEADER_BYTES)
        self._out: list[bytes] = []  # bytes for the pool socket, written at the next wait
        self._watch: asyncio.Task[None] | None = None  # reads the pool while the app is slow
        # Read for the fast path and not given to h11; while `fast`, the watcher adds here.
        self.raw = bytearray()
        self.fast = False

    def fast_ready(self) -> bool:
        """Whether the next request may be read raw: h11 between requests, holding no
        bytes (what it holds is the start of the next request, its to read)."""
        h = self.h11
        if h.their_state is not h11.IDLE or h.our_state is not h11.IDLE:
            return False
        data, closed = h.trailing_data
        return not data and not closed

    async def read_raw(self, idle: bool) -> bool:
        """More bytes into `raw`; False when the relay closed the socket."""
        if idle:
            data = await self.reader.read(CHUNK_BYTES)  # an idle pool socket waits forever
        else:
            async with asyncio.timeout(POOL_IDLE_TIMEOUT_S):
                data = await self.reader.read(CHUNK_BYTES)
        if not data:
            return False
        self.observer.count_bytes(len(data), 0)
        self.raw += data
        return True

    def to_h11(self) -> None:
        """Give h11 what was read raw: the exchange goes on through h11."""
        if self.raw:
            self.h11.receive_data(bytes(self.raw))
            self.raw.clear()

    def send(self, *pieces: bytes) -> None:
        """Bytes of the fast path straight to the socket (drained by `drain`)."""
        data = b"".join(pieces) if len(pieces) > 1 else pieces[0]
        if data:
            self.writer.write(data)
            self.observer.count_bytes(0, len(data))

    async def drain(self) -> None:
        await self.writer.drain()

    async def next_event(self, idle: bool = False) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11 types its sentinels loosely
            if idle:
                data = await self.reader.read(CHUNK_BYTES)  # an idle pool socket waits forever
            else:
                async with asyncio.timeout(POOL_IDLE_TIMEOUT_S):
                    data = await self.reader.read(CHUNK_BYTES)
            self.observer.count_bytes(len(data), 0)
            self.h11.receive_data(data)

    def queue(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.writer.write(data)
            self.observer.count_bytes(0, len(data))
            await self.writer.drain()

    def drop_unsent(self) -> None:
        """Forget queued bytes (an exchange failed: the socket is about to close)."""
        self._out.clear()

    async def drain_request_body(self) -> None:
        """Read (and drop) the rest of the request so the socket can carry the next one."""
        while self.h11.their_state is h11.SEND_BODY:
            event = await self.next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise PoolClosed()

    # -- the watcher -------------------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watch is not None

    def watch(self) -> asyncio.Task[None]:
        """The task that watches the pool socket (started on the first call)."""
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_pool())
        return self._watch

    async def _watch_pool(self) -> None:
        """While the app works on an answer, notice the relay giving up (closing the
        socket). Bytes that arrive meanwhile go to h11, so none are lost."""
        data = await self.reader.read(CHUNK_BYTES)
        if not data:
            raise PoolClosed()
        self.observer.count_bytes(len(data), 0)
        if self.fast:
            self.raw += data
        else:
            self.h11.receive_data(data)

    async def read_local(self, conn: LocalConnection, sender: asyncio.Task[None] | None) -> bytes:
        """The next bytes from the app. Meanwhile the pump sends the rest of the upload,
        or, once it is sent and the app is slow, a task watches the pool socket."""
        if (sender is None or sender.done()) and not self.watching:
            if sender is not None:
                sender.result()  # the upload failed: PoolClosed, a timeout, bad HTTP
            try:
                async with asyncio.timeout(WATCH_POOL_AFTER_S):
                    return await LocalSide.read(conn)
            except TimeoutError:
                pass  # a slow answer: wait on, now watching the pool socket too
        reading = asyncio.ensure_future(LocalSide.read(conn))
        try:
            async with asyncio.timeout(LOCAL_IDLE_TIMEOUT_S) as idle:
                while not reading.done():
                    other: asyncio.Task[None] | None = None
                    watch: asyncio.Task[None] | None = None
                    if sender is not None and not sender.done():
                        other = sender
                    else:
                        if sender is not None:
                            sender.result()
                        watch = self.watch()
                        if watch.done():
                            watch.result()  # raises PoolClosed; else data came
                        else:
                            other = watch
                    waiting = {reading} if other is None else {reading, other}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if other is not None and other.done() and other is watch:
                        other.result()
                return reading.result()
        except TimeoutError as exc:
            if idle.expired():
                raise LocalFailed("no answer in time", status=HTTPStatus.GATEWAY_TIMEOUT) from exc
            raise
        finally:
            await cancel(reading)  # safe: a read that is cancelled consumes nothing

    async def stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            await cancel(watch)  # its outcome, if any, was already acted on
