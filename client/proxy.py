"""Relay one pool socket to the local app, one HTTP/1.1 exchange at a time.

The relay writes plain HTTP/1.1 requests on a pool socket and may reuse it for many
sequential requests (keep-alive, never pipelined). Both sides go through h11, so every
request is framed: `--local-host` rewrites the Host header of each request and never
touches a body. After a 101 the two sockets are spliced raw until either side closes;
the pool socket is then closed.

Speed: each pool socket keeps one keep-alive connection to the local app and reopens it
lazily. It is kept only when the answer ended exactly where HTTP framing says, was not of a
kind where buggy apps write a body anyway (HEAD, 204, 304, after a 1xx, with trailers), and
nothing else waits (`ready_for_next`); right before its reuse it is checked again
(`idle_state`): whatever an app sends past an answer would otherwise be read as the next
visitor's. The first time the app does send such bytes, keep-alive is off for good for the
whole tunnel (`KeepAlive.distrust`): a late answer that arrives after the next request was
written cannot be told from that request's answer (nginx and Go's http.Transport have the
same limit), so a connection of its own per request is the only safe course left.
A request that finds the kept connection dead (the app closed it while idle)
before any byte of an answer is sent again on a fresh connection when that is possible:
it has no body, or all of its body is still held. A request whose body is all here is
proxied inline; only a body still streaming in gets a task of its own, and the pool
socket is watched by a task only when the app is slow to answer. Writes to the pool
socket are gathered until the next wait, so a small answer leaves in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11

from .http import describe_error
from .local import CLOSED, QUIET, STRAY, LocalConnection, connect
from .target import LocalTarget, ProxyObserver, RequestLog, error_response, rewrite_host

__all__ = ["LocalTarget", "PoolSocketProxy", "ProxyObserver", "RequestLog", "rewrite_host"]

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
# An answer slower than this gets a task that watches the pool socket, so a relay that
# gives up is noticed at once; faster answers (nearly all) are awaited inline.
WATCH_POOL_AFTER_S = 0.1
# Body bytes kept while a request may have to be sent again on a fresh connection (the
# kept one turned out dead). A bigger upload on a dead connection is a 502. At least two
# pool reads, so a body that arrived with its head is always kept.
REPLAY_MAX_BYTES = 2 * CHUNK_BYTES
# Interim (1xx) answers passed on before the real one; more is a broken or hostile app (the
# relay gives up after as many: relay/exchange.py MAX_INFORMATIONAL).
MAX_INFORMATIONAL = 8
# Answers after which a connection is never reused: no body is allowed, yet buggy apps
# write one anyway (RFC 9110 sections 15.3.5 and 15.4.5).
_BODILESS_STATUSES = frozenset({204, 304})
# Response headers that describe the local connection, not the pool socket.
_LOCAL_ONLY_RESPONSE_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection"})


class _PoolClosed(Exception):
    """The relay closed the pool socket (or broke HTTP) in the middle of an exchange."""


class _LocalFailed(Exception):
    """The local app could not be reached or broke HTTP; the visitor gets a 502/504."""

    def __init__(self, reason: str, status: int = 502, garbled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.garbled = garbled  # the app's bytes were not HTTP


# RFC 9110 section 9.2.2: a request is sent again automatically only when repeating it is
# harmless (as Go's HTTP client does): an idempotent method, or an Idempotency-Key header.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_IDEMPOTENCY_KEYS = frozenset({b"idempotency-key", b"x-idempotency-key"})


def may_resend(request: h11.Request) -> bool:
    if request.method in _IDEMPOTENT:
        return True
    return any(name in _IDEMPOTENCY_KEYS for name, _ in request.headers)


class _Upload:
    """A request body as read from the pool socket so far."""

    def __init__(self) -> None:
        self.first = bytearray()  # what came with the head: goes out with it
        self.held: bytearray | None = bytearray()  # all of it, while it may be sent again
        self.complete = False
        self.trailers: list[tuple[bytes, bytes]] = []
        self.size = 0  # body bytes read from the pool socket so far

    def hold(self, data: bytes) -> None:
        self.size += len(data)
        if self.held is not None:
            if len(self.held) + len(data) > REPLAY_MAX_BYTES:
                self.held = None
            else:
                self.held += data


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
        # The kept connection to the local app and its parser (None: open one when needed).
        self.local: LocalConnection | None = None
        self.local_h11: h11.Connection | None = None
        self._out: list[bytes] = []  # bytes for the pool socket, written at the next wait
        self._watch: asyncio.Task[None] | None = None  # reads the pool while the app is slow
        self._answered = False  # a byte of the app's answer to this request has arrived
        self._ambiguous = False  # this answer had a 1xx or trailers: never reuse after it

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
            self._close_local()
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

    def _queue(self, event: h11.Event) -> None:
        data = self.pool.send(event)
        if data:
            self._out.append(data)

    async def _flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.writer.write(data)
            self.observer.count_bytes(0, len(data))
            await self.writer.drain()

    async def _drain_request_body(self) -> None:
        """Read (and drop) the rest of the request so the socket can carry the next one."""
        while self.pool.their_state is h11.SEND_BODY:
            event = await self._next_pool_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _PoolClosed()

    async def _watch_pool(self) -> None:
        """While the app works on an answer, notice the relay giving up (closing the
        socket). Bytes that arrive meanwhile go to h11, so none are lost."""
        data = await self.reader.read(CHUNK_BYTES)
        if not data:
            raise _PoolClosed()
        self.observer.count_bytes(len(data), 0)
        self.pool.receive_data(data)

    async def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            await _cancel(watch)  # its outcome, if any, was already acted on

    async def _answer_with_error(self, error: _LocalFailed) -> bool:
        self.observer.local_unreachable(error.reason)
        await self._stop_watch()
        if self.pool.our_state is not h11.SEND_RESPONSE:
            return False  # part of a response is already out: only closing is honest
        response, body = error_response(error.status, error.reason, self.target)
        await self._drain_request_body()
        self._queue(response)
        self._queue(h11.Data(data=body))
        self._queue(h11.EndOfMessage())
        await self._flush()
        return True

    # -- the local side ----------------------------------------------------------------

    async def _local_connection(self) -> tuple[LocalConnection, h11.Connection, bool]:
        """The kept connection if it is still good, else a new one; True if kept."""
        if self.local is not None and self.local_h11 is not None:
            # Checked now, as the next request is about to be written, not only when the
            # last answer ended: a late second answer may have arrived since.
            self.local.unpark()
            keep = self.target.keepalive.enabled
            state = self.local.idle_state() if keep else CLOSED
            if state == QUIET:
                return self.local, self.local_h11, True
            self._close_local()
            if state == STRAY:
                self._distrust("it wrote to an idle connection")
        target = self.target
        try:
            async with asyncio.timeout(LOCAL_CONNECT_TIMEOUT_S):
                conn = await connect(target.host, target.port, target.ssl_context, target.addresses)
        except TimeoutError as exc:
            raise _LocalFailed(f"no connection within {LOCAL_CONNECT_TIMEOUT_S:g} s") from exc
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise _LocalFailed(describe_error(exc)) from exc
        self.observer.local_reachable()
        local = h11.Connection(h11.CLIENT, max_incomplete_event_size=LOCAL_MAX_HEADER_BYTES)
        self.local, self.local_h11 = conn, local
        return conn, local, False

    def _distrust(self, how: str) -> None:
        """The app sent bytes nobody asked for: keep-alive off for the rest of the run."""
        if self.target.keepalive.distrust():
            self.observer.keepalive_off(how)

    def _idle_news(self) -> None:
        """The kept connection became readable while idle: the app closed it, or wrote
        bytes that nobody asked for (an answer to no one: from now on, no reuse)."""
        conn = self.local
        if conn is None:
            return
        state = conn.idle_state()
        if state == QUIET:
            conn.park(self._idle_news)  # woken for nothing (a spurious wake-up)
            return
        self._close_local()
        if state == STRAY:
            self._distrust("it wrote to an idle connection")

    def _close_local(self) -> None:
        conn, self.local, self.local_h11 = self.local, None, None
        if conn is not None:
            conn.close()

    async def _local_read(self, conn: LocalConnection) -> bytes:
        try:
            return await conn.read(CHUNK_BYTES)
        except OSError as exc:
            raise _LocalFailed(exc.strerror or str(exc)) from exc

    async def _read_local(self, conn: LocalConnection, sender: asyncio.Task[None] | None) -> bytes:
        """The next bytes from the app. Meanwhile the pump sends the rest of the upload,
        or, once it is sent and the app is slow, a task watches the pool socket."""
        if (sender is None or sender.done()) and self._watch is None:
            if sender is not None:
                sender.result()  # the upload failed: _PoolClosed, a timeout, bad HTTP
            try:
                async with asyncio.timeout(WATCH_POOL_AFTER_S):
                    return await self._local_read(conn)
            except TimeoutError:
                pass  # a slow answer: wait on, now watching the pool socket too
        reading = asyncio.ensure_future(self._local_read(conn))
        try:
            async with asyncio.timeout(LOCAL_IDLE_TIMEOUT_S) as idle:
                while not reading.done():
                    other: asyncio.Task[None] | None = None
                    if sender is not None and not sender.done():
                        other = sender
                    else:
                        if sender is not None:
                            sender.result()
                        if self._watch is None:
                            self._watch = asyncio.create_task(self._watch_pool())
                        if self._watch.done():
                            self._watch.result()  # raises _PoolClosed; else data came
                        else:
                            other = self._watch
                    waiting = {reading} if other is None else {reading, other}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if other is not None and other.done() and other is self._watch:
                        other.result()
                return reading.result()
        except TimeoutError as exc:
            if idle.expired():
                raise _LocalFailed("no answer in time", status=504) from exc
            raise
        finally:
            await _cancel(reading)  # safe: a read that is cancelled consumes nothing

    async def _next_local_event(
        self,
        conn: LocalConnection,
        local: h11.Connection,
        upload: _Upload,
        sender: asyncio.Task[None] | None,
    ) -> h11.Event:
        while True:
            try:
                event = local.next_event()
            except h11.RemoteProtocolError as exc:
                reason = f"bad HTTP from the local app ({exc})"
                raise _LocalFailed(reason, garbled=True) from exc
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            await self._flush()  # what the app said so far goes out before we wait
            data = await self._read_local(conn, sender)
            if data and not self._answered:
                self._answered = True
                upload.held = None  # the app has answered: never send this request again
            local.receive_data(data)

    # -- one exchange ------------------------------------------------------------------

    async def _exchange(self, request: h11.Request) -> bool:
        """Proxy one request; True when the pool socket may carry another one."""
        started = time.monotonic()
        status = 0
        headers = rewrite_host(list(request.headers.raw_items()), self.target.host_header)
        outgoing = h11.Request(method=request.method, target=request.target, headers=headers)
        upload = _Upload()
        while True:  # the body that came with the head
            event = self.pool.next_event()
            if isinstance(event, h11.Data):
                upload.first += event.data
                upload.hold(event.data)
            else:
                if isinstance(event, h11.EndOfMessage):
                    upload.complete = True
                    upload.trailers = list(event.headers.raw_items())
                break
        try:
            try:
                status = await self._send_and_relay(outgoing, upload)
            except _LocalFailed as error:
                status = error.status
                self._close_local()
                return await self._answer_with_error(error)
            return status != 101
        finally:
            await self._stop_watch()
            self._out.clear()  # unsent only when the exchange failed: the socket closes
            if status:
                method = request.method.decode("ascii", "replace")
                path = request.target.decode("ascii", "replace")
                duration = time.monotonic() - started
                self.observer.request_done(RequestLog(method, path, status, duration))

    async def _send_and_relay(self, outgoing: h11.Request, upload: _Upload) -> int:
        """Send the request to the app and its answer to the pool socket; the status.
        On a kept connection found dead before any answer, once more on a fresh one, when the
        request may be repeated without harm."""
        if not may_resend(outgoing):
            upload.held = None
        for attempt in (0, 1):
            conn, local, kept = await self._local_connection()
            data = bytearray(local.send(outgoing))
            body = upload.first if attempt == 0 else upload.held
            if body:
                data += local.send(h11.Data(data=bytes(body)))
            if upload.complete:
                data += local.send(h11.EndOfMessage(headers=upload.trailers))
            if not kept:
                upload.held = None  # a fresh connection is never tried again
            self._answered = False
            self._ambiguous = outgoing.method == b"HEAD"
            sender: asyncio.Task[None] | None = None
            try:
                conn.write(bytes(data))
                if upload.complete:
                    try:
                        await conn.drain()
                    except OSError as exc:
                        raise _LocalFailed(describe_error(exc)) from exc
                else:  # the rest of the body streams in: send it while the app answers
                    sender = asyncio.create_task(self._pump_request_body(local, conn, upload))
                status = await self._relay_response(conn, local, upload, sender)
            except _LocalFailed as error:
                if kept and error.garbled:
                    # Not HTTP on a reused connection: most likely the rest of something
                    # the app sent for an earlier request.
                    self._distrust("it sent bytes that are not HTTP on a kept connection")
                again = kept and error.status == 502 and not self._answered
                if attempt or not again or upload.held is None:
                    raise
                self._close_local()
                continue
            finally:
                if sender is not None:
                    await _cancel(sender)
            if status == 101:
                return status
            if local.trailing_data[0]:
                self._distrust("it sent more after a complete answer")
            ambiguous = self._ambiguous or status in _BODILESS_STATUSES
            if self.target.keepalive.enabled and ready_for_next(local, upload.size, ambiguous):
                local.start_next_cycle()  # keep the connection for the next request
                conn.park(self._idle_news)
            else:
                self._close_local()
            return status
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pump_request_body(
        self, local: h11.Connection, writer: LocalConnection, upload: _Upload
    ) -> None:
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
            if isinstance(event, h11.Data):
                upload.hold(event.data)
            elif isinstance(event, h11.EndOfMessage):
                upload.complete = True
                upload.trailers = list(event.headers.raw_items())
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
                    writer.write(local.send(h11.EndOfMessage(headers=upload.trailers)))
                    await writer.drain()
                    return
            except (OSError, h11.LocalProtocolError):
                local_ok = False

    async def _relay_response(
        self,
        conn: LocalConnection,
        local: h11.Connection,
        upload: _Upload,
        sender: asyncio.Task[None] | None,
    ) -> int:
        """Copy the response local -> pool; returns its status."""
        status = 0
        interim = 0
        while True:
            event = await self._next_local_event(conn, local, upload, sender)
            if isinstance(event, h11.InformationalResponse):
                interim += 1
                self._ambiguous = True
                if interim > MAX_INFORMATIONAL:
                    raise _LocalFailed(f"more than {MAX_INFORMATIONAL} interim (1xx) answers")
                if event.status_code == 101:
                    if sender is not None:
                        await sender  # the upgrade request has no body; it is complete now
                    await self._stop_watch()  # the splice reads the pool socket from now on
                    self._queue(event)
                    await self._flush()
                    await self._splice(local, conn)
                    return 101
                self._queue(event)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [
                    (n, v)
                    for n, v in event.headers.raw_items()
                    if n.lower() not in _LOCAL_ONLY_RESPONSE_HEADERS
                ]
                self._queue(h11.Response(status_code=status, headers=headers, reason=event.reason))
            elif isinstance(event, h11.Data):
                if status == 0:
                    raise _LocalFailed("body before headers")
                self._queue(event)
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    self._ambiguous = True  # trailers: rare, and where framing bugs hide
                if sender is not None:
                    async with asyncio.timeout(POOL_IDLE_TIMEOUT_S):
                        if sender.done():
                            await sender
                        else:
                            # The app answered before reading the whole upload: stop
                            # sending it, and read the rest off the pool socket.
                            await _cancel(sender)
                            await self._drain_request_body()
                self._queue(h11.EndOfMessage())
                await self._flush()
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise _LocalFailed("the local app closed the connection without answering")

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


def ready_for_next(local: h11.Connection, body_size: int, ambiguous: bool) -> bool:
    """Whether the connection to the app may be kept for the next visitor's request.

    Only when the answer ended exactly where HTTP framing says and nothing else waits:
    anything past its end (bytes after a Content-Length, a body after HEAD, 204 or 304) is
    what the app sent for nobody, and the next visitor would read it as their answer. Not
    after an `ambiguous` answer either (to HEAD, a 204 or 304, after a 1xx, with trailers):
    where buggy apps write bytes anyway, often a little later, when the check cannot see
    them. A request with a body also ends the connection: an app may answer before reading
    the body and then take the body for a request of its own (a visitor could smuggle one),
    and nothing tells us whether it read it. The app closing, or an upload cut short, too.
    Bytes that arrive later are caught right before the reuse (`idle_state`).
    """
    if local.our_state is not h11.DONE or local.their_state is not h11.DONE:
        return False
    return not (local.trailing_data[0] or body_size or ambiguous)


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait for it to end. Its own error is dropped (the caller has acted
    on it, or no longer cares); a cancellation of the caller is not."""
    if not task.done():
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass


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
