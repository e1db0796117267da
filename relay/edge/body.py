"""A visitor's request body on its way in: its size (the relay's limit, or the tunnel's
plan's), its pace (a minimum rate after a grace period), and, when chunked, how much of it
is framing. A part of relay/edge/channel.py's RelayHTTPChannel.
"""

from __future__ import annotations

import daphne.server  # noqa: F401  isort:skip  (installs the asyncio reactor first)

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as twisted_reactor
from twisted.web import http

from relay.edge.edge_settings import EdgeSettings
from relay.protocol import (
    CHUNK_FRAMING_FREE_BYTES,
    CHUNKED_SLICE_BYTES,
    MAX_CHUNK_FRAMING_SHARE,
)

# Untyped, as in relay/edge/channel.py (the Twisted boundary).
reactor: Any = twisted_reactor


class RequestBody(http.HTTPChannel):
    """A part of RelayHTTPChannel: the state below is the channel's (set in its `__init__`,
    so a connection is made in one call), and so is `_refuse`."""

    edge: EdgeSettings
    _rejected: bool
    _body_limit: int  # bytes allowed in the current request's body; 0: no limit
    _body_seen: int
    _chunked_wire: int  # bytes of the current chunked body on the wire; -1: none
    _body_deadline: Any  # a Twisted DelayedCall while a body is read
    _body_started: float
    _body_allowed: float  # seconds: the grace period, plus the pace of bytes read
    _refuse: Callable[[int, str, str], None]

    # --- the body deadline (a minimum pace after a grace period) ---------------------------
    def _start_body_deadline(self) -> None:
        self._stop_body_deadline()
        self._body_started = reactor.seconds()
        self._body_allowed = self.edge.body_timeout_s
        self._body_deadline = reactor.callLater(self._body_allowed, self._body_check)

    def _stop_body_deadline(self) -> None:
        if self._body_deadline is not None:
            if self._body_deadline.active():
                self._body_deadline.cancel()
            self._body_deadline = None

    def _body_check(self) -> None:
        self._body_deadline = None
        if self._rejected or self.transport is None:
            return
        left = self._body_started + self._body_allowed - reactor.seconds()
        if left > 0:
            self._body_deadline = reactor.callLater(left, self._body_check)
            return
        grace, rate = self.edge.body_timeout_s, self.edge.body_min_rate_bytes_s
        self._refuse(
            408,
            "Request Timeout",
            f"The request body arrived too slowly: after {grace:g} s it must keep coming at "
            f"{rate} bytes per second or more.",
        )

    def body_over_limit(self, size: int) -> bool:
        """Count body bytes as they arrive (chunked bodies have no length up front)."""
        if self._rejected:
            return True
        self._body_seen += size
        rate = self.edge.body_min_rate_bytes_s
        if rate:
            # Earned at the pace of the bytes, but never more than RELAY_BODY_MAX_AHEAD_S
            # ahead of now: a fast start must not buy hours of trickling (Apache: body=20-40).
            allowed = self._body_allowed + size / rate
            cap = reactor.seconds() - self._body_started + self.edge.body_max_ahead_s
            self._body_allowed = allowed if allowed < cap else cap
        if self._body_limit and self._body_seen > self._body_limit:
            self._refuse_body()
            return True
        return False

    def _refuse_body(self) -> None:
        self._refuse(
            413,
            "Content Too Large",
            f"The request body is larger than the {self._body_limit} bytes allowed here.",
        )

    def allContentReceived(self) -> None:  # noqa: N802
        self._stop_body_deadline()
        if not self._rejected:
            super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._rejected:
            return
        if self._chunked_wire < 0 or self._handlingRequest:
            super().rawDataReceived(data)
            return
        # A chunked body: parsed a slice at a time, its framing checked after each slice
        # (relay.protocol.MAX_CHUNK_FRAMING_SHARE), so tiny chunks cost bounded work.
        for start in range(0, len(data), CHUNKED_SLICE_BYTES):
            if self._handlingRequest or self.line_mode:
                # The body ended in an earlier slice: the rest is the next request's, for
                # Twisted to hold while this one is answered, or, when it was answered at
                # once (the channel back in line mode), for the head parser of the outer
                # call, which takes bytes given back to it (relay/edge/channel.py).
                rest = data[start:]
                if self.line_mode:
                    self.dataReceived(rest)
                else:
                    super().rawDataReceived(rest)
                return
            piece = data[start : start + CHUNKED_SLICE_BYTES]  # all of it: no copy
            self._chunked_wire += len(piece)
            super().rawDataReceived(piece)
            if self._rejected:
                return
            if getattr(self._transferDecoder, "state", "") == "TRAILER":
                continue  # trailers are no chunk framing: bounded as a head (trailers.py)
            wire, framing = self._chunked_wire, self._chunked_wire - self._body_seen
            if wire > CHUNK_FRAMING_FREE_BYTES and framing * MAX_CHUNK_FRAMING_SHARE > wire:
                self._refuse(
                    400,
                    "Bad Request",
                    f"The request body comes in chunks too small to forward ({framing} of its "
                    f"first {wire} bytes are chunk framing). Send it with a Content-Length, "
                    "or in chunks of 64 bytes or more.",
                )
                return
