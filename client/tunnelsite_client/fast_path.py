"""The fast path of one exchange: a plain request and its plain answer passed as bytes.

Most requests a tunnel carries are plain: an HTTP/1.1 head, a Content-Length body (or none)
that arrived with it, and an answer framed by a Content-Length. For those the head goes to
the app as it came (Host rewritten for `--local-host`), the answer's head back without the
app's connection headers, and its body in pieces as large as they arrive, exactly
Content-Length bytes of it: nothing is parsed into h11 events and framed again. The heads
are checked strictly (raw_head.py); a request the fast path does not take goes to h11 as
bytes before any is sent (`FALLBACK`), and an answer it does not take (1xx, chunked,
close-delimited, not HTTP, the app closing or failing) is handed to the exchange's h11 path
with everything read so far (`Handoff`), which then reads it as before. What the fast path
answers keeps exchange.py's rules: the kept connection's checks and resend (replay.py), the
keep-alive decision (keepalive.py), the deadlines of pool_socket.py's reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

import h11

from .http import describe_error
from .limits import LOCAL_MAX_HEADER_BYTES, POOL_MAX_HEADER_BYTES, REPLAY_MAX_BYTES
from .local import LocalConnection
from .local_side import LocalFailed, LocalSide
from .pool_socket import PoolClosed, PoolSocket
from .raw_head import RequestHead, head_end, request_head, response_head
from .replay import resend_harmless_raw
from .target import LocalTarget, ProxyObserver

# The request was not taken: its bytes are h11's now, for the exchange's usual path.
FALLBACK: Final = "fallback"


@dataclass
class Served:
    """The fast path answered: the status, for the request line."""

    request: RequestHead
    status: int


@dataclass
class Handoff:
    """The request is the app's (sent, or failed before any answer) and the answer goes
    through h11 from here: what was sent and what the app said so far."""

    request: RequestHead
    body: bytes
    conn: LocalConnection | None  # None: `error` happened before the app was reached
    local: h11.Connection | None
    kept: bool
    answer: bytes  # what the app said so far
    closed: bool  # the app closed its connection after `answer`
    error: LocalFailed | None = None


def _terminator_unlike_ours(data: bytes | bytearray) -> bool:
    """A head that ends with a bare LF somewhere (h11 reads `\\n\\r?\\n` as its end, and
    head_end looks for CRLF CRLF only): h11's to read."""
    return b"\n\n" in data or b"\n\r\n" in data


async def read_request(pool: PoolSocket, host: bytes | None) -> RequestHead | str | None:
    """The next request if the fast path takes it (its head and body are `pool.raw`'s
    first bytes); FALLBACK (its bytes given to h11); None: the relay closed the socket."""
    raw = pool.raw
    while (end := head_end(raw)) < 0:
        if len(raw) > POOL_MAX_HEADER_BYTES or _terminator_unlike_ours(raw):
            pool.to_h11()
            return FALLBACK
        if not await pool.read_raw(idle=not raw):
            return None  # closed: between requests, or in the middle of a head
    head = None if end > POOL_MAX_HEADER_BYTES else request_head(raw, end, host)
    if head is None or len(raw) < end + head.body_bytes:
        pool.to_h11()  # not plain, or a body still streaming in: the upload pump's
        return FALLBACK
    return head


async def exchange(
    pool: PoolSocket,
    local_side: LocalSide,
    target: LocalTarget,
    observer: ProxyObserver,
    request: RequestHead,
) -> Served | Handoff:
    """Send `request` (whole in `pool.raw`) to the app and pass its answer on."""
    end = request.head_bytes + request.body_bytes
    body = bytes(pool.raw[request.head_bytes : end])
    del pool.raw[:end]
    resendable = request.body_bytes <= REPLAY_MAX_BYTES and resend_harmless_raw(
        request.method, request.lowered
    )
    for attempt in (0, 1):
        try:
            conn, local, kept = await local_side.connection()
        except LocalFailed as error:
            return Handoff(request, body, None, None, False, b"", False, error)
        again = kept and resendable and not attempt
        try:
            conn.write(request.head + body if body else request.head)
            await conn.drain()
        except OSError as exc:
            if again:
                local_side.close()
                continue
            return Handoff(
                request, body, conn, local, kept, b"", False, LocalFailed(describe_error(exc))
            )
        answer = bytearray()
        closed = False
        try:
            while (end := head_end(answer)) < 0:
                if len(answer) > LOCAL_MAX_HEADER_BYTES or _terminator_unlike_ours(answer):
                    break
                data = await pool.read_local(conn, None)
                if not data:
                    closed = True
                    break
                answer += data
        except LocalFailed as error:
            if again and not answer and error.status == HTTPStatus.BAD_GATEWAY:
                local_side.close()
                continue
            return Handoff(request, body, conn, local, kept, bytes(answer), closed, error)
        if closed and not answer and again:
            local_side.close()  # the kept connection was dead: once more, on a fresh one
            continue
        head = None if end < 0 or end > LOCAL_MAX_HEADER_BYTES else response_head(answer, end)
        if head is None or closed:
            return Handoff(request, body, conn, local, kept, bytes(answer), closed)
        await _pass_answer(
            pool,
            local_side,
            target,
            observer,
            conn,
            answer,
            head.head,
            end,
            head.body_bytes,
            request,
        )
        return Served(request, head.status)
    raise AssertionError("unreachable")  # pragma: no cover


async def _pass_answer(
    pool: PoolSocket,
    local_side: LocalSide,
    target: LocalTarget,
    observer: ProxyObserver,
    conn: LocalConnection,
    answer: bytearray,
    head: bytes,
    head_bytes: int,
    length: int,
    request: RequestHead,
) -> None:
    """The answer's head and exactly `length` bytes of body to the relay; then whether the
    connection to the app is kept (keepalive.py's rules). PoolClosed when the answer cannot
    be finished (the app closed, or failed, in the middle of its body)."""
    first = memoryview(answer)[head_bytes : head_bytes + length]
    left = length - len(first)
    pool.send(head, bytes(first))
    extra = len(answer) > head_bytes + length
    try:
        while left > 0:
            await pool.drain()
            try:
                data = await pool.read_local(conn, None)
            except LocalFailed as error:
                observer.local_unreachable(error.reason)
                raise PoolClosed() from error  # part of the answer is out: only closing is honest
            if not data:
                observer.local_unreachable("the local app closed the connection mid-answer")
                raise PoolClosed()
            if len(data) > left:
                extra = True
                data = data[:left]
            left -= len(data)
            pool.send(data)
        await pool.drain()
    except BaseException:
        local_side.close()
        raise
    if extra:
        local_side.close()
        local_side.distrust("it sent more after a complete answer")
    elif target.keepalive.enabled and not request.body_bytes:
        local_side.keep_idle(conn)
    else:
        local_side.close()
