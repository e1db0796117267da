"""The frames a TCP tunnel's pool connection may carry next, sans-IO (relay/protocol.py,
"TCP tunnels").

`TcpState.relay_frame(kind)` is told each frame the relay sent and says what it means, or
raises `FrameError` for a frame the conversation does not allow (DATA before OPEN, DATA
after the relay's EOF, a second OPEN, ...). `app_ended()` records the EOF lt sends for the
app. After EOF both ways the state is idle again: the next OPEN starts a new conversation.

After its EOF a side sends nothing more for the conversation: once `app_eof` is set lt sends
no DATA and no CLOSE, even when the app's connection then fails (a server that answers, then
closes with unread input). The relay counts the conversation over at EOF both ways and may
have sent the connection's next OPEN already; a CLOSE would reset that next visitor. lt drops
the relay's DATA until the relay's EOF instead, and the conversation ends clean (the app's
socket is gone: a direct TCP connection would have lost those bytes too).
"""

from __future__ import annotations

import enum

from .limits import TCP_CLOSE, TCP_DATA, TCP_EOF, TCP_OPEN
from .tcp_frames import FrameError


class Step(enum.Enum):
    OPEN = "open"  # a visitor connected: dial the app
    DATA = "data"  # bytes for the app
    EOF = "eof"  # the visitor is done writing: write_eof to the app
    CLOSE = "close"  # the conversation ended abruptly: abort the app, close the pool connection
    DONE = "done"  # EOF both ways: the conversation is over, the connection serves again


class TcpState:
    __slots__ = ("open", "relay_eof", "app_eof")

    def __init__(self) -> None:
        self.open = False  # between an OPEN and EOF both ways (or a CLOSE)
        self.relay_eof = False
        self.app_eof = False

    @property
    def idle(self) -> bool:
        return not self.open

    def relay_frame(self, kind: bytes) -> Step:
        if kind == TCP_OPEN:
            if self.open:
                raise FrameError("an OPEN in the middle of a conversation")
            self.open, self.relay_eof, self.app_eof = True, False, False
            return Step.OPEN
        if not self.open:
            raise FrameError(f"a {kind.decode('latin-1')} frame before OPEN")
        if kind == TCP_CLOSE:
            self.open = False
            return Step.CLOSE
        if self.relay_eof:
            raise FrameError(f"a {kind.decode('latin-1')} frame after the relay's EOF")
        if kind == TCP_DATA:
            return Step.DATA
        if kind == TCP_EOF:
            self.relay_eof = True
            return self._maybe_done(Step.EOF)
        raise FrameError(f"unexpected frame {kind!r}")

    def app_ended(self) -> Step:
        """lt sent EOF for the app: DONE when the relay's EOF came already, else EOF."""
        if not self.open or self.app_eof:
            raise RuntimeError("the app's EOF twice, or outside a conversation")
        self.app_eof = True
        return self._maybe_done(Step.EOF)

    def _maybe_done(self, step: Step) -> Step:
        if self.relay_eof and self.app_eof:
            self.open = False
            return Step.DONE
        return step
