"""A TCP tunnel's frames on a pool connection (relay.protocol, "TCP tunnels"), sans-IO.

`FrameReader` is fed the bytes as they come and returns the frames they complete. A DATA
frame's payload is handed out in pieces as it arrives, so nothing holds a whole frame; the
control frames (OPEN, EOF, CLOSE) are small and returned whole. Malformed input raises
`FrameError`, after which the connection is closed. tunnelsite_client/tcp_frames.py is the same code
with the client's constants (the client imports nothing of the server);
tests/unit/test_tcp_frames.py checks the two against each other.
"""

from __future__ import annotations

import struct

from relay.protocol import (
    TCP_CLOSE,
    TCP_DATA,
    TCP_EOF,
    TCP_FRAME_HEADER_BYTES,
    TCP_MAX_DATA_BYTES,
    TCP_MAX_OPEN_BYTES,
    TCP_MAX_REASON_BYTES,
    TCP_OPEN,
)

_HEADER = struct.Struct(">cI")
assert _HEADER.size == TCP_FRAME_HEADER_BYTES
# The largest payload of each kind; EOF carries none, DATA at least one byte.
_MAX_PAYLOAD = {
    TCP_OPEN: TCP_MAX_OPEN_BYTES,
    TCP_DATA: TCP_MAX_DATA_BYTES,
    TCP_EOF: 0,
    TCP_CLOSE: TCP_MAX_REASON_BYTES,
}


class FrameError(Exception):
    """The peer broke the framing: the pool connection cannot be trusted any more."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One whole frame (a control frame, or a DATA frame of at most TCP_MAX_DATA_BYTES)."""
    if len(payload) > _MAX_PAYLOAD[kind] or (kind == TCP_DATA and not payload):
        raise ValueError(f"a {kind!r} frame of {len(payload)} bytes")
    return _HEADER.pack(kind, len(payload)) + payload


def data_frames(data: bytes | memoryview) -> list[bytes | memoryview]:
    """`data` (at least one byte; a view of a read being paced, relay/pool/tcp_visitor.py)
    as DATA frames: headers and payload slices, to write in one writelines (or join); the
    payload is sliced only when larger than one frame."""
    if len(data) <= TCP_MAX_DATA_BYTES:
        return [_HEADER.pack(TCP_DATA, len(data)), data]
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), TCP_MAX_DATA_BYTES):
        piece = data[start : start + TCP_MAX_DATA_BYTES]
        parts.append(_HEADER.pack(TCP_DATA, len(piece)))
        parts.append(piece)
    return parts


def reason_payload(reason: str) -> bytes:
    """A CLOSE's reason, cut to TCP_MAX_REASON_BYTES without splitting a character."""
    return reason.encode("utf-8")[:TCP_MAX_REASON_BYTES].decode("utf-8", "ignore").encode()


class FrameReader:
    """Feed it bytes; it returns (kind, payload) for each frame or DATA piece they complete."""

    __slots__ = ("_head", "_kind", "_left", "_control")

    def __init__(self) -> None:
        self._head = b""  # a header's first bytes, when a read split it
        self._kind = b""  # the frame whose payload is being read ("" between frames)
        self._left = 0  # its payload bytes still to come
        self._control = b""  # a control frame's payload so far

    @property
    def between_frames(self) -> bool:
        """No frame is half read: the peer stopped at a frame's end."""
        return not self._head and not self._kind

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Every frame and DATA piece `data` completes."""
        return self.feed_some(data, 0)[0]

    def feed_some(self, data: bytes, most: int) -> tuple[list[tuple[bytes, bytes]], int]:
        """At most `most` frames or DATA pieces of `data` (0: all), and how many of its bytes
        they took: the rest is fed again later. A caller bounds its work per turn of the
        loop by the number of frames (a slice of one-byte frames is ~11,000 of them), while a
        slice of big DATA frames still goes through in one call."""
        out: list[tuple[bytes, bytes]] = []
        pos, end = 0, len(data)
        while pos < end and not (most and len(out) >= most):
            if not self._kind:
                need = TCP_FRAME_HEADER_BYTES - len(self._head)
                self._head += data[pos : pos + need]
                pos += need
                if len(self._head) < TCP_FRAME_HEADER_BYTES:
                    break
                kind, length = _HEADER.unpack(self._head)
                self._head = b""
                limit = _MAX_PAYLOAD.get(kind)
                if limit is None:
                    raise FrameError(f"unknown frame kind {kind!r}")
                if length > limit or (length == 0 and kind in (TCP_DATA, TCP_OPEN)):
                    raise FrameError(f"a {kind.decode('latin-1')} frame of {length} bytes")
                if length == 0:
                    out.append((kind, b""))
                    continue
                self._kind, self._left = kind, length
            take = min(self._left, end - pos)
            piece = data[pos : pos + take] if take < end or pos else data
            pos += take
            self._left -= take
            if self._kind == TCP_DATA:
                out.append((TCP_DATA, piece))
            else:
                self._control += piece
            if not self._left:
                if self._kind != TCP_DATA:
                    out.append((self._kind, self._control))
                    self._control = b""
                self._kind = b""
        return out, min(pos, end)
