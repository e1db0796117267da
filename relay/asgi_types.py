"""Type names for ASGI callables and h11's events, kept in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# One part of an HTTP/1.1 message, as h11 frames and parses it.
H11Event = h11.Event
# What `next_event` of an upstream gives once bytes are in: an event, or PAUSED after the
# response has ended (h11 waits for the next request cycle).
H11Received = h11.Event | type[h11.PAUSED]
# What `h11.Connection.next_event()` gives without waiting: NEED_DATA too.
H11Next = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]
