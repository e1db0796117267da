"""Whether a pool socket serves another exchange after an answer.

Only when the response ended cleanly: anything odd (bytes after the end of a response, a
parse error, a timeout) closes it. A raw-pipe client (the npm one: no client id) passes
on whatever the app writes, so its sockets get more care: never reused after an answer of
a kind where buggy apps write a body anyway (HEAD, 204, 304, a 1xx, trailers), checked
once more right before each reuse (`quiet`), and once its app has sent bytes past an
answer, never reused again (`Tunnel.distrust`). Our lt frames every exchange itself and
needs none of this.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Protocol

import h11

from relay.asgi_types import H11Next
from relay.pool.backpressure import Backpressure
from relay.pool.wire import Exchange


class Trust(Protocol):
    """What reuse asks of a socket's tunnel (relay/pool/tunnel.py)."""

    client_id: str  # our lt's id; empty for a raw-pipe (npm) client
    distrusted: bool

    def distrust(self, how: str) -> None: ...


class Reuse(Backpressure):
    """A part of relay.pool.socket.PoolSocket, which sets the state below; it reads the
    inbox (relay/pool/backpressure.py) for bytes past an answer."""

    __slots__ = ("busy", "ambiguous", "_fd")

    tunnel: Trust
    busy: bool  # an exchange owns this socket
    ambiguous: bool  # this exchange is of a kind never reused on a raw pipe
    _fd: int  # the socket's descriptor, for the peek before a reuse
    _h11: h11.Connection | None  # the socket's parser, made on its first request
    _wire: Exchange | None  # the exchange on the fast path (relay/pool/wire.py), if it was
    abort: Callable[[], None]

    def finish_exchange(self, had_body: bool) -> bool:
        """Called after a complete response. True when the socket may serve another."""
        self.busy = False
        if self.closed or self._eof:
            return False
        wire = self._wire  # the exchange that just ended, on the fast path
        conn = self._h11  # else its h11 parser
        if wire is None and conn is None:
            return False
        if self._inbox or (wire is None and conn is not None and conn.trailing_data[0]):
            self.tunnel.distrust("it sent more after a complete answer")
            return False
        if not self.tunnel.client_id:
            # A raw pipe (npm): not after a body (an app may answer before reading it, then
            # answer the body as a request of its own, whenever it likes), nor after an
            # answer where apps write a body anyway, nor once its app was caught at it.
            if had_body or self.ambiguous or self.tunnel.distrusted:
                return False
        if wire is not None:
            return wire.done  # both sides ended cleanly, on a kept-alive HTTP/1.1 answer
        return conn is not None and next_cycle(conn)

    def quiet(self) -> bool:
        """Right before a raw pipe's socket serves again: whether the client is still quiet.

        One poll(2) of its descriptor, for what arrived since the last answer but the loop
        has not read yet: a late second answer, or the end of the stream (or an error).
        Either closes the socket (the first also distrusts the tunnel, which a
        recv(MSG_PEEK) tells apart); False then."""
        if self.closed or self._eof or self.transport is None or self.transport.is_closing():
            return False
        if self._fd < 0:
            return True
        # Nothing readable: the common case, with no socket object made (that costs ~6 us).
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        if not poller.poll(0):
            return True
        # A socket object over the transport's descriptor, detached at once (uvloop hands
        # out no socket that can recv; this costs no syscall of its own).
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, self._fd)
        try:
            data = probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        finally:
            probe.detach()
        self.abort()
        if data:
            self.tunnel.distrust("it wrote to an idle connection")
        return False

    @property
    def used(self) -> bool:
        """Whether the socket carried a request (its parser is made on first use)."""
        return self._h11 is not None or self._wire is not None


# Statuses that forbid a body, which buggy apps write anyway (RFC 9110 15.3.5, 15.4.5).
_BODILESS_STATUSES = frozenset({204, 304})


def ambiguous(event: H11Next) -> bool:
    """An event after which a raw pipe's socket is not reused: a 1xx, a 204 or 304, trailers."""
    kind = type(event)
    if kind is h11.InformationalResponse:
        return True
    if kind is h11.Response:
        return event.status_code in _BODILESS_STATUSES  # type: ignore[union-attr]  # `kind is` narrows at run time; mypy does not follow it
    return kind is h11.EndOfMessage and bool(event.headers)  # type: ignore[union-attr]  # as above


def next_cycle(conn: h11.Connection) -> bool:
    """Ready `conn` for the next exchange; False unless both sides ended cleanly and
    nothing arrived past the end (bytes after a response must not reach the next one)."""
    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
        return False
    if conn.trailing_data[0]:
        return False
    try:
        conn.start_next_cycle()
    except h11.LocalProtocolError:
        return False
    return True
