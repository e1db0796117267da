"""Relay one pool socket to the local app, one HTTP/1.1 exchange at a time.

The relay writes plain HTTP/1.1 requests on a pool socket and may reuse it for many
sequential requests (keep-alive, never pipelined). Both sides go through h11, so every
request is framed: `--local-host` rewrites the Host header of each request and never
touches a body. Each request gets a fresh connection to the local app. After a 101 the
two sockets are spliced raw until either side closes; the pool socket is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import h11

from .http import describe_error
from .local import LocalConnection, connect

# Read size on both sides: big enough for throughput, small enough to bound memory.
CHUNK_BYTES = 128 * 1024
# Header size limits. The relay enforces its own (16 KiB) before adding X-Forwarded-*;
# we stay lenient so a request the relay accepted is never refused here. Local apps
# sometimes send big cookies.
POOL_MAX_HEADER_BYTES = 64 * 1024
LOCAL_MAX_HEADER_BYTES = 64 * 1024
# A local app that does not accept a connection in this time counts as down (502).
LOCAL_CONNECT_TIMEOUT_S = 5.0
# Longest silence from the local app (waiting for the answer, or between body chunks)
# before the visitor gets a 504; long enough for slow pages and long polling.
LOCAL_IDLE_TIMEOUT_S = 300.0
# Longest silence from the relay in the middle of a request body.
POOL_IDLE_TIMEOUT_S = 60.0
# Response headers that describe the local connection, not the pool socket.
_LOCAL_ONLY_RESPONSE_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection"})


@dataclass(frozen=True)
class LocalTarget:
    """Where requests go: `host:port`, optionally over TLS, with an optional Host rewrite."""

    host: str = "localhost"
    port: int = 80
    host_header: str | None = None  # --local-host: the Host value each request gets
    ssl_context: ssl.SSLContext | None = None

    @property
    def label(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class RequestLog:
    method: str
    target: str
    status: int
    duration_s: float


class ProxyObserver(Protocol):
    def request_done(self, log: RequestLog) -> None: ...
    def local_unreachable(self, reason: str) -> None: ...
    def local_reachable(self) -> None: ...
    def count_bytes(self, received: int, sent: int) -> None: ...


class _PoolClosed(Exception):
    """The relay closed the pool socket (or broke HTTP) in the middle of an exchange."""


class _LocalFailed(Exception):
    """The local app could not be reached or broke HTTP; the visitor gets a 502/504."""

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def rewrite_host(headers: list[tuple[bytes, bytes]], host: str | None) -> list[tuple[bytes, bytes]]:
    """The request headers with every Host value replaced by `host` (unchanged if None)."""
    if host is None:
        return headers
    value = host.encode("idna" if not host.isascii() else "ascii")
    return [(name, value if name.lower() == b"host" else v) for name, v in headers]


def error_response(status: int, reason: str, target: LocalTarget) -> tuple[h11.Response, bytes]:
    """The response the client writes itself when the local app fails the visitor."""
    title = {502: "502 Bad Gateway", 504: "504 Gateway Timeout"}.get(status, str(status))
    body = (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>The tunnel is up, but the local app at "
        f"<code>{html.escape(target.label)}</code> did not answer: {html.escape(reason)}.</p>"
        "<p>Start the app (or check <code>--port</code>/<code>--local-host</code>) "
        "and reload.</p></body></html>\n"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-tunnelsite-client-error", b"local-app-unreachable"),
    ]
    return h11.Response(status_code=status, headers=headers, reason=title[4:]), body


class PoolSocketProxy:
    """Serves the requests that arrive on one pool socket until it closes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: LocalTarget,
        observer: ProxyObserver,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.target = target
        self.observer = observer
        self.pool = h11.Connection(h11.SERVER, max_incomplete_event_size=POOL_MAX_HEADER_BYTES)
        self.requests = 0

    async def run(self) -> None:
        """Answer requests until the relay closes the socket or it cannot be reused."""
        try:
            while True:
                event = await self._next_pool_event(idle=True)
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed: the relay let the socket go
                self.requests += 1
                if not await self._exchange(event):
                    return
                if self.pool.our_state is not h11.DONE or self.pool.their_state is not h11.DONE:
                    return
                self.pool.start_next_cycle()
        except (_PoolClosed, h11.ProtocolError, OSError, TimeoutError):
            return
        finally:
            self.writer.close()

    # -- the pool side ----------------------------------------------------------------

    async def _next_pool_event(self, idle: bool = False) -> h11.Event:
        while True:
            event = self.pool.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if idle:
                data = await self.reader.read(CHUNK_BYTES)  # an idle pool socket waits forever
            else:
                async with asyncio.timeout(POOL_IDLE_TIMEOUT_S):
                    data = await self.reader.read(CHUNK_BYTES)
            self.observer.count_bytes(len(data), 0)
            self.pool.receive_data(data)

    async def _send_pool(self, event: h11.Event) -> None:
        data = self.pool.send(event)
        if data:
            self.writer.write(data)
            self.observer.count_bytes(0, len(data))
            await self.writer.drain()

    async def _drain_request_body(self) -> None:
        """Read (and drop) the rest of the request so the socket can carry the next one."""
        while self.pool.their_state is h11.SEND_BODY:
            event = await self._next_pool_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _PoolClosed()

    async def _answer_with_error(self, request: h11.Request, error: _LocalFailed) -> bool:
        self.observer.local_unreachable(error.reason)
        if self.pool.our_state is not h11.SEND_RESPONSE:
            return False  # part of a response is already out: only closing is honest
        response, body = error_response(error.status, error.reason, self.target)
        await self._drain_request_body()
        await self._send_pool(response)
        await self._send_pool(h11.Data(data=body))
        await self._send_pool(h11.EndOfMessage())
        return True

    # -- one exchange ------------------------------------------------------------------

    async def _exchange(self, request: h11.Request) -> bool:
        """Proxy one request; True when the pool socket may carry another one."""
        started = time.monotonic()
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace")
        status = 0
        conn: LocalConnection | None = None
        try:
            try:
                conn = await self._open_local()
            except _LocalFailed as error:
                status = error.status
                return await self._answer_with_error(request, error)
            self.observer.local_reachable()
            local = h11.Connection(h11.CLIENT, max_incomplete_event_size=LOCAL_MAX_HEADER_BYTES)
            headers = rewrite_host(list(request.headers.raw_items()), self.target.host_header)
            outgoing = h11.Request(method=request.method, target=request.target, headers=headers)
            conn.write(local.send(outgoing))
            sender = asyncio.create_task(self._pump_request_body(local, conn))
            try:
                status = await self._pump_response(local, conn, sender)
            except _LocalFailed as error:
                status = error.status
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, _LocalFailed, OSError):
                    await sender
                return await self._answer_with_error(request, error)
            finally:
                if not sender.done():
                    sender.cancel()
                    with contextlib.suppress(BaseException):
                        await sender
            return status != 101
        finally:
            if conn is not None:
                conn.close()
            if status:
                duration = time.monotonic() - started
                self.observer.request_done(RequestLog(method, path, status, duration))

    async def _open_local(self) -> LocalConnection:
        target = self.target
        try:
            async with asyncio.timeout(LOCAL_CONNECT_TIMEOUT_S):
                return await connect(target.host, target.port, target.ssl_context)
        except TimeoutError as exc:
            raise _LocalFailed(f"no connection within {LOCAL_CONNECT_TIMEOUT_S:g} s") from exc
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise _LocalFailed(describe_error(exc)) from exc

    async def _pump_request_body(self, local: h11.Connection, writer: LocalConnection) -> None:
        """Copy the request body pool -> local. A local app that stops reading early (it
        answered already) makes us drop the rest, so the pool socket stays in step."""
        local_ok = True
        try:
            await writer.drain()  # the head goes out now (a visitor may wait for 100-continue)
        except OSError:
            local_ok = False
        while True:
            event = await self._next_pool_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _PoolClosed()
            if writer.is_closing():
                local_ok = False
            if not local_ok:
                if isinstance(event, h11.EndOfMessage):
                    return
                continue
            try:
                if isinstance(event, h11.Data):
                    writer.write(local.send(event))
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    writer.write(local.send(h11.EndOfMessage(headers=event.headers)))
                    await writer.drain()
                    return
            except (OSError, h11.LocalProtocolError):
                local_ok = False

    async def _next_local_event(self, local: h11.Connection, reader: LocalConnection) -> h11.Event:
        while True:
            try:
                event = local.next_event()
            except h11.RemoteProtocolError as exc:
                raise _LocalFailed(f"bad HTTP from the local app ({exc})") from exc
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                async with asyncio.timeout(LOCAL_IDLE_TIMEOUT_S):
                    data = await reader.read(CHUNK_BYTES)
            except TimeoutError as exc:
                raise _LocalFailed("no answer in time", status=504) from exc
            except OSError as exc:
                raise _LocalFailed(exc.strerror or str(exc)) from exc
            local.receive_data(data)

    async def _pump_response(
        self,
        local: h11.Connection,
        conn: LocalConnection,
        sender: asyncio.Task[None],
    ) -> int:
        """Copy the response local -> pool; returns its status."""
        status = 0
        watch: asyncio.Task[None] | None = None
        waiter: asyncio.Future[h11.Event] | None = None
        try:
            while True:
                if waiter is None:
                    waiter = asyncio.ensure_future(self._next_local_event(local, conn))
                if not sender.done():
                    others = {sender}
                else:
                    if watch is None:
                        watch = asyncio.create_task(self._watch_pool())
                    others = set() if watch.done() else {watch}
                await asyncio.wait({waiter, *others}, return_when=asyncio.FIRST_COMPLETED)
                for task in others:
                    if task.done() and task.exception() is not None:
                        waiter.cancel()
                        with contextlib.suppress(BaseException):
                            await waiter
                        raise task.exception()  # type: ignore[misc]
                if not waiter.done():
                    continue  # the request is sent: now also watch the pool socket
                event, waiter = waiter.result(), None
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        await sender  # the upgrade request has no body; it is complete now
                        if watch is not None:
                            watch.cancel()  # the splice reads the pool socket from now on
                            with contextlib.suppress(asyncio.CancelledError):
                                await watch
                        await self._send_pool(event)
                        await self._splice(local, conn)
                        return 101
                    await self._send_pool(event)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = [
                        (n, v)
                        for n, v in event.headers.raw_items()
                        if n.lower() not in _LOCAL_ONLY_RESPONSE_HEADERS
                    ]
                    await self._send_pool(
                        h11.Response(status_code=status, headers=headers, reason=event.reason)
                    )
                elif isinstance(event, h11.Data):
                    if status == 0:
                        raise _LocalFailed("body before headers")
                    await self._send_pool(event)
                elif isinstance(event, h11.EndOfMessage):
                    async with asyncio.timeout(POOL_IDLE_TIMEOUT_S):
                        if sender.done():
                            await sender
                        else:
                            # The app answered before reading the whole upload: stop
                            # sending it, and read the rest off the pool socket.
                            sender.cancel()
                            with contextlib.suppress(asyncio.CancelledError, OSError):
                                await sender
                            await self._drain_request_body()
                    await self._send_pool(h11.EndOfMessage())
                    return status
                elif isinstance(event, h11.ConnectionClosed):
                    raise _LocalFailed("the local app closed the connection without answering")
        finally:
            for task in (watch, waiter):  # never leave a read pending on a closing socket
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _watch_pool(self) -> None:
        """While the app works on an answer, notice the relay giving up (closing the
        socket). Bytes that arrive meanwhile go to h11, so none are lost."""
        data = await self.reader.read(CHUNK_BYTES)
        if not data:
            raise _PoolClosed()
        self.observer.count_bytes(len(data), 0)
        self.pool.receive_data(data)

    async def _splice(self, local: h11.Connection, conn: LocalConnection) -> None:
        """After a 101: raw bytes both ways until either side closes."""
        pool_extra, _ = self.pool.trailing_data
        local_extra, _ = local.trailing_data
        count = self.observer.count_bytes
        if local_extra:
            self.writer.write(local_extra)
            count(0, len(local_extra))
        if pool_extra:
            conn.write(pool_extra)
            await conn.drain()
        pool_in = self.reader.read
        up = asyncio.create_task(_copy(pool_in, conn.write, conn.drain, lambda n: count(n, 0)))
        down = asyncio.create_task(
            _copy(conn.read, self.writer.write, self.writer.drain, lambda n: count(0, n))
        )
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)


async def _copy(
    read: Callable[[int], Awaitable[bytes]],
    write: Callable[[bytes], None],
    drain: Callable[[], Awaitable[None]],
    count: Callable[[int], None],
) -> None:
    with contextlib.suppress(OSError):
        while data := await read(CHUNK_BYTES):
            count(len(data))
            write(data)
            await drain()
