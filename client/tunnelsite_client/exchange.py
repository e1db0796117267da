"""Relay one pool socket to the local app, one HTTP/1.1 exchange at a time.

A plain request and its plain answer take the fast path (fast_path.py): their heads are
checked strictly and passed as bytes, the answer's body copied as it arrives. Everything
else goes through h11 on both sides (pool_socket.py, local_side.py), and is framed again;
so does an answer the fast path hands over (`_take_over`). `--local-host` rewrites the Host
header of each request either way and never touches a body. After a
101 the two sockets are spliced raw until either side closes (splice.py); the pool socket
is then closed. A connection to the app is kept for the next request only when that is
safe (keepalive.py); a request that finds the kept one dead before any byte of an answer is
sent again on a fresh connection when that is possible (replay.py). A request whose body
is all here is proxied inline; only a body still streaming in gets a task of its own, and
the pool socket is watched by a task only when the app is slow to answer.
"""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus

import h11

from . import fast_path
from .fast_path import Handoff, Served
from .http import describe_error
from .keepalive import BODILESS_STATUSES, ready_for_next
from .limits import MAX_INFORMATIONAL, POOL_IDLE_TIMEOUT_S
from .local import LocalConnection, connect
from .local_side import Dial, LocalFailed, LocalSide
from .pool_socket import PoolClosed, PoolSocket
from .replay import may_resend
from .splice import splice
from .target import (
    LocalTarget,
    ProxyObserver,
    RequestLog,
    error_response,
    host_value,
    rewrite_host,
)
from .tasks import cancel
from .upload import Upload, pump_request_body

__all__ = ["LocalTarget", "PoolSocketProxy", "ProxyObserver", "RequestLog", "rewrite_host"]

# Response headers that describe the local connection, not the pool socket.
_LOCAL_ONLY_RESPONSE_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection"})

# The app closed its connection with an answer due, having sent nothing of it.
CLOSED_UNANSWERED = (
    "the local app closed the connection without an HTTP answer (is it an HTTP server?)"
)


class PoolSocketProxy:
    """Serves the requests that arrive on one pool socket until it closes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: LocalTarget,
        observer: ProxyObserver,
        dial: Dial = connect,
    ) -> None:
        self.target = target
        self.observer = observer
        self.pool = PoolSocket(reader, writer, observer)
        self.local = LocalSide(target, observer, dial)
        self.requests = 0
        self._answered = False  # a byte of the app's answer to this request has arrived
        self._ambiguous = False  # this answer had a 1xx or trailers: never reuse after it
        self._host = host_value(target.host_header)  # --local-host, as header bytes
        self._h11_untouched = True  # the last exchange never fed the pool's h11

    async def run(self) -> None:
        """Answer requests until the relay closes the socket or it cannot be reused."""
        pool = self.pool.h11
        fast = True  # h11 holds nothing: the next request may be read raw
        try:
            while True:
                if fast or self.pool.fast_ready():
                    served = await self._fast_exchange()
                    if served is False:
                        return
                    if served is True:
                        fast = self._h11_untouched  # else ask h11 what it holds
                        continue
                fast = False
                event = await self.pool.next_event(idle=True)
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed: the relay let the socket go
                self.requests += 1
                if not await self._exchange(event):
                    return
                if pool.our_state is not h11.DONE or pool.their_state is not h11.DONE:
                    return
                pool.start_next_cycle()
        except (PoolClosed, h11.ProtocolError, OSError, TimeoutError):
            return
        finally:
            self.local.close()
            self.pool.writer.close()

    async def _fast_exchange(self) -> bool | None:
        """One request on the fast path: True when the pool socket may carry another one,
        False when it closes, None when the request is h11's (its bytes are)."""
        request = await fast_path.read_request(self.pool, self._host)
        if request is None:
            return False  # the relay let the socket go
        if isinstance(request, str):  # FALLBACK
            return None
        self.requests += 1
        started = time.monotonic()
        status = 0
        self.pool.fast = True
        try:
            outcome = await fast_path.exchange(
                self.pool, self.local, self.target, self.observer, request
            )
            if isinstance(outcome, Served):
                status = outcome.status
                self._h11_untouched = True
                return True
            self._h11_untouched = False
            status, reusable = await self._take_over(outcome)
            pool = self.pool.h11
            if not reusable or pool.our_state is not h11.DONE or pool.their_state is not h11.DONE:
                return False
            pool.start_next_cycle()
            return True
        finally:
            await self.pool.stop_watch()
            self.pool.fast = False
            self.pool.drop_unsent()
            if status:
                self._log(request.method, request.target, status, started)

    async def _take_over(self, handoff: Handoff) -> tuple[int, bool]:
        """The answer of a request sent by the fast path, read through h11 from where the
        fast path stopped: the status, and whether the pool socket may carry another."""
        await self.pool.stop_watch()  # what it read is in `raw`, after this request
        self.pool.fast = False
        pool = self.pool.h11
        pool.receive_data(handoff.request.head + handoff.body)
        self.pool.to_h11()
        event = pool.next_event()
        if not isinstance(event, h11.Request):  # pragma: no cover - raw_head checked it
            raise PoolClosed()
        request = event
        while not isinstance(event, h11.EndOfMessage):
            event = pool.next_event()
            if not isinstance(event, h11.Data | h11.EndOfMessage):  # pragma: no cover
                raise PoolClosed()  # the whole body was there: nothing else can come
        upload = Upload()
        upload.complete = True
        upload.size = len(handoff.body)
        upload.held = None  # sent once already: h11's path never sends it again
        conn, local = handoff.conn, handoff.local
        try:
            if handoff.error is not None:
                raise handoff.error
            if handoff.closed and not handoff.answer:
                raise LocalFailed(CLOSED_UNANSWERED)
            assert conn is not None and local is not None
            local.send(
                h11.Request(
                    method=request.method,
                    target=request.target,
                    headers=list(request.headers.raw_items()),
                )
            )
            if handoff.body:
                local.send(h11.Data(data=handoff.body))
            local.send(h11.EndOfMessage())
            self._answered = bool(handoff.answer)
            self._ambiguous = False
            if handoff.answer:
                local.receive_data(handoff.answer)
            if handoff.closed:
                local.receive_data(b"")
            status = await self._relay_response(conn, local, upload, None)
        except LocalFailed as error:
            if handoff.kept and error.garbled:
                self.local.distrust("it sent bytes that are not HTTP on a kept connection")
            self.local.close()
            return error.status, await self._answer_with_error(error)
        if status == HTTPStatus.SWITCHING_PROTOCOLS:
            return status, False
        assert conn is not None and local is not None
        self._settle(conn, local, upload, status)
        return status, True

    def _log(self, method: bytes, target: bytes, status: int, started: float) -> None:
        duration = time.monotonic() - started
        path = target.decode("ascii", "replace")
        self.observer.request_done(
            RequestLog(method.decode("ascii", "replace"), path, status, duration)
        )

    async def _exchange(self, request: h11.Request) -> bool:
        """Proxy one request; True when the pool socket may carry another one."""
        started = time.monotonic()
        status = 0
        headers = rewrite_host(list(request.headers.raw_items()), self.target.host_header)
        outgoing = h11.Request(method=request.method, target=request.target, headers=headers)
        upload = Upload()
        while True:  # the body that came with the head
            event = self.pool.h11.next_event()
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
            except LocalFailed as error:
                status = error.status
                self.local.close()
                return await self._answer_with_error(error)
            return status != HTTPStatus.SWITCHING_PROTOCOLS
        finally:
            await self.pool.stop_watch()
            self.pool.drop_unsent()  # unsent only when the exchange failed: the socket closes
            if status:
                self._log(request.method, request.target, status, started)

    async def _answer_with_error(self, error: LocalFailed) -> bool:
        self.observer.local_unreachable(error.reason)
        await self.pool.stop_watch()
        if self.pool.h11.our_state is not h11.SEND_RESPONSE:
            return False  # part of a response is already out: only closing is honest
        response, body = error_response(error.status, error.reason, self.target)
        await self.pool.drain_request_body()
        self.pool.queue(response)
        self.pool.queue(h11.Data(data=body))
        self.pool.queue(h11.EndOfMessage())
        await self.pool.flush()
        return True

    async def _send_and_relay(self, outgoing: h11.Request, upload: Upload) -> int:
        """Send the request to the app and its answer to the pool socket; the status.
        On a kept connection found dead before any answer, once more on a fresh one, when the
        request may be repeated without harm."""
        if not may_resend(outgoing):
            upload.held = None
        for attempt in (0, 1):
            conn, local, kept = await self.local.connection()
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
                        raise LocalFailed(describe_error(exc)) from exc
                else:  # the rest of the body streams in: send it while the app answers
                    sender = asyncio.create_task(pump_request_body(self.pool, local, conn, upload))
                status = await self._relay_response(conn, local, upload, sender)
            except LocalFailed as error:
                if kept and error.garbled:
                    # Not HTTP on a reused connection: most likely the rest of something
                    # the app sent for an earlier request.
                    self.local.distrust("it sent bytes that are not HTTP on a kept connection")
                again = kept and error.status == HTTPStatus.BAD_GATEWAY and not self._answered
                if attempt or not again or upload.held is None:
                    raise
                self.local.close()
                continue
            finally:
                if sender is not None:
                    await cancel(sender)
            if status == HTTPStatus.SWITCHING_PROTOCOLS:
                return status
            self._settle(conn, local, upload, status)
            return status
        raise AssertionError("unreachable")  # pragma: no cover

    def _settle(
        self, conn: LocalConnection, local: h11.Connection, upload: Upload, status: int
    ) -> None:
        """After an answer read by h11: keep the connection to the app, or close it."""
        if local.trailing_data[0]:
            self.local.distrust("it sent more after a complete answer")
        ambiguous = self._ambiguous or status in BODILESS_STATUSES
        if self.target.keepalive.enabled and ready_for_next(local, upload.size, ambiguous):
            self.local.keep(conn, local)  # for the next request
        else:
            self.local.close()

    async def _relay_response(
        self,
        conn: LocalConnection,
        local: h11.Connection,
        upload: Upload,
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
                    raise LocalFailed(f"more than {MAX_INFORMATIONAL} interim (1xx) answers")
                if event.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
                    if sender is not None:
                        await sender  # the upgrade request has no body; it is complete now
                    await self.pool.stop_watch()  # the splice reads the pool socket from now on
                    self.pool.queue(event)
                    await self.pool.flush()
                    pool_extra, _ = self.pool.h11.trailing_data
                    local_extra, _ = local.trailing_data
                    await splice(
                        self.pool.reader,
                        self.pool.writer,
                        conn,
                        pool_extra,
                        local_extra,
                        self.observer.count_bytes,
                    )
                    return HTTPStatus.SWITCHING_PROTOCOLS
                self.pool.queue(event)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [
                    (n, v)
                    for n, v in event.headers.raw_items()
                    if n.lower() not in _LOCAL_ONLY_RESPONSE_HEADERS
                ]
                response = h11.Response(status_code=status, headers=headers, reason=event.reason)
                self.pool.queue(response)
            elif isinstance(event, h11.Data):
                if status == 0:
                    raise LocalFailed("body before headers")
                self.pool.queue(event)
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
                            await cancel(sender)
                            await self.pool.drain_request_body()
                self.pool.queue(h11.EndOfMessage())
                await self.pool.flush()
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise LocalFailed(CLOSED_UNANSWERED)

    async def _next_local_event(
        self,
        conn: LocalConnection,
        local: h11.Connection,
        upload: Upload,
        sender: asyncio.Task[None] | None,
    ) -> h11.Event:
        closed = False
        while True:
            try:
                event = local.next_event()
            except h11.RemoteProtocolError as exc:
                if closed and not self._answered:
                    # Not garbage: the app hung up with an answer due (a kept connection it
                    # timed out, or something that is not an HTTP server, such as Redis).
                    raise LocalFailed(CLOSED_UNANSWERED) from exc
                reason = f"bad HTTP from the local app ({exc})"
                raise LocalFailed(reason, garbled=True) from exc
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11 types its sentinels loosely
            await self.pool.flush()  # what the app said so far goes out before we wait
            data = await self.pool.read_local(conn, sender)
            closed = not data
            if data and not self._answered:
                self._answered = True
                upload.held = None  # the app has answered: never send this request again
            local.receive_data(data)
