"""Relay one pool socket to the local app, one HTTP/1.1 exchange at a time.

Both sides go through h11 (pool_socket.py, local_side.py), so every request is framed:
`--local-host` rewrites the Host header of each request and never touches a body. After a
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

from .http import describe_error
from .keepalive import BODILESS_STATUSES, ready_for_next
from .limits import MAX_INFORMATIONAL, POOL_IDLE_TIMEOUT_S
from .local import LocalConnection, connect
from .local_side import Dial, LocalFailed, LocalSide
from .pool_socket import PoolClosed, PoolSocket
from .replay import may_resend
from .splice import splice
from .target import LocalTarget, ProxyObserver, RequestLog, error_response, rewrite_host
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

    async def run(self) -> None:
        """Answer requests until the relay closes the socket or it cannot be reused."""
        pool = self.pool.h11
        try:
            while True:
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
                method = request.method.decode("ascii", "replace")
                path = request.target.decode("ascii", "replace")
                duration = time.monotonic() - started
                self.observer.request_done(RequestLog(method, path, status, duration))

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
            if local.trailing_data[0]:
                self.local.distrust("it sent more after a complete answer")
            ambiguous = self._ambiguous or status in BODILESS_STATUSES
            if self.target.keepalive.enabled and ready_for_next(local, upload.size, ambiguous):
                self.local.keep(conn, local)  # for the next request
            else:
                self.local.close()
            return status
        raise AssertionError("unreachable")  # pragma: no cover

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
