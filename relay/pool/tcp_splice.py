"""The app's side of a TCP visitor connection: frames read from the pool connection, their
bytes written to the visitor (relay.protocol, "TCP tunnels").

The pool connection is read a slice (PARSE_SLICE_BYTES) at a time and only while the
visitor takes what it is sent: when its transport pauses writing, the pump waits, the pool
socket's inbox fills to READ_HIGH_WATER and the pool connection stops being read, so the
relay holds at most about that much per connection whatever the app sends. A turn parses at
most EVENTS_PER_TURN frames of a slice (`FrameReader.feed_some`): their payloads are joined
into one write to the visitor, then the loop is given back, and the slice's rest waits for
the next turn. A flood of one-byte frames costs a write per turn and cannot hold the loop; a
slice of big DATA frames is one or two events, so a bulk slice is still one turn, one parse
and one write.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from relay.pool.socket import PoolSocket
from relay.pool.tcp_frames import FrameError, FrameReader
from relay.protocol import EVENTS_PER_TURN, TCP_CLOSE, TCP_DATA, TCP_EOF


class ClientClosed(Exception):
    """lt ended the conversation abruptly (a CLOSE frame, or its pool connection closed)."""


class RelayEnds(Exception):
    """The relay ends the conversation (the idle timeout, the plan's daily bytes): lt is
    sent CLOSE with this reason."""


class Carried(Protocol):
    """What the pump needs of the visitor connection (relay/pool/tcp_visitor.py)."""

    frames: FrameReader
    app_done: bool  # lt sent EOF
    visitor_done: bool  # the visitor sent its FIN (and lt was sent EOF)
    clean: bool  # EOF both ways: the conversation is over

    def deliver(self, data: bytes) -> None: ...

    def app_eof(self) -> None: ...

    def over_quota(self) -> bool: ...

    async def visitor_writable(self) -> None: ...


async def pump(conn: PoolSocket, side: Carried) -> None:
    """Copy lt's frames to the visitor until the conversation ends: returns once it ended
    cleanly (EOF both ways), raises ClientClosed or FrameError (lt's doing), RelayEnds, or
    TimeoutError when the visitor took nothing for the idle timeout."""
    pending = b""  # the rest of a slice, parsed in the next turns
    while True:
        await side.visitor_writable()
        if not pending:
            pending = await conn.read_raw(None)
            if not pending:
                raise ClientClosed("the pool connection closed mid-conversation")
        pending = _turn(pending, side)
        if side.clean:
            if side.frames.feed(pending):
                raise FrameError("bytes after the conversation ended")
            return
        if side.over_quota():
            raise RelayEnds("the tunnel's daily traffic allowance is used up")
        await asyncio.sleep(0)  # a bounded turn: other connections read too


def _turn(data: bytes, side: Carried) -> bytes:
    """Parse at most EVENTS_PER_TURN frames (or DATA pieces) of `data` and write their bytes
    to the visitor in one go: the bytes left for the next turn. A slice of big DATA frames
    is a few events, parsed in one call; one of one-byte frames takes many turns."""
    out: list[bytes] = []
    events, used = side.frames.feed_some(data, EVENTS_PER_TURN)
    for kind, payload in events:
        if side.clean:
            raise FrameError("bytes after the conversation ended")
        if kind == TCP_DATA:
            if side.app_done:
                raise FrameError("DATA after EOF")
            out.append(payload)
        elif kind == TCP_EOF:
            if side.app_done:
                raise FrameError("a second EOF")
            if out:
                side.deliver(b"".join(out))
                out = []
            side.app_eof()
        elif kind == TCP_CLOSE:
            raise ClientClosed(payload.decode("utf-8", "replace"))
        else:
            raise FrameError(f"a {kind!r} frame from the client")
    if out:
        side.deliver(out[0] if len(out) == 1 else b"".join(out))
    return data[used:] if used < len(data) else b""
